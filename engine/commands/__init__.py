"""The `rsseg` commands: each a thin call into the engine modules (engine/cli.py parses the arguments)."""
