"""Model-room tests: litellm reads its price map from the package, not the internet.

autofix sets LITELLM_LOCAL_MODEL_COST_MAP when imported; a test module that imports litellm first
would otherwise have litellm try (and retry) a download at import. conftest runs before the modules.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
