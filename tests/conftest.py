pytest_plugins = ["tests.kube_emulator.pytest_plugin"]
