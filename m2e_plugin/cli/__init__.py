"""The `m2e` command line: one console script, one module per subcommand (see :mod:`m2e_plugin.cli.main`)."""
