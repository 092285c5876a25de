pytest_plugins = ["tests.kube_emulator.pytest_plugin", "tests.control_plane.pytest_plugin"]
