from m2e_plugin.cli.main import entry

entry()
