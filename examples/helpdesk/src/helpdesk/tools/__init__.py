"""Tools the assistant can call, each with a JSON argument schema."""
