"""autofix: turns production failures of an AI assistant into reviewed, validated fixes."""

import os

# litellm downloads its price map at import unless told otherwise; these machines are offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
