"""Discovery: /api, /apis, group and resource lists, /version."""

from __future__ import annotations

from tests.kube_emulator.core import ApiCore
from tests.kube_emulator.resources import BUILTIN_GROUP_ORDER
from tests.kube_emulator.store import Obj

VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class DiscoveryVerbs(ApiCore):
    """The discovery documents of the registered types."""

    def _api_versions(self) -> Obj:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address()}
            ],
        }

    def _group_entry(self, group: str, versions: list[str]) -> Obj:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def _group_list(self) -> Obj:
        groups = self.registry.groups()
        order = [g for g in BUILTIN_GROUP_ORDER if g in groups] + sorted(
            g for g in groups if g not in BUILTIN_GROUP_ORDER
        )
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_entry(g, groups[g]) for g in order if g],
        }

    def _group(self, group: str) -> Obj | None:
        versions = self.registry.groups().get(group)
        if not group or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group, versions)}

    def _resource_list(self, group: str, version: str) -> Obj | None:
        types = [t for t in self.registry.all() if t.group == group and t.version == version]
        if not types:
            return None
        resources = [r for t in sorted(types, key=lambda t: t.plural) for r in t.discovery()]
        gv = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }
