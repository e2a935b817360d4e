"""autofix's LLM code-patch optimizer (`autofix-code-patch/code_patch`); see README.md.

Importing the package registers nothing: `_registry` (the entry point) imports the optimizer.
"""
