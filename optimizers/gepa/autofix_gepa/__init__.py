"""GEPA reflective prompt evolution as an autofix optimizer plugin (`autofix-gepa/gepa`).

autofix finds it through the entry point `autofix.optimizers: gepa = autofix_gepa._registry`;
importing this package registers nothing and pulls in no heavy dependency.
"""

__all__: list[str] = []
