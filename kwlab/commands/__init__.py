"""Small CLI subcommands that do not belong to a larger package."""
