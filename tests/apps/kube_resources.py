"""The resources the API server TEST DOUBLE (kube_apiserver.py) serves, and the documents that
describe them to kubectl: legacy discovery and the least of OpenAPI v3 and v2.
"""


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=(), subresources=(),
                 status=True, custom=False, categories=()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short, self.subresources = namespaced, list(short), list(subresources)
        self.status, self.custom, self.categories = status, custom, list(categories)

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def qualified(self):  # what Kubernetes names in its messages: "deployments.apps"
        return self.plural + "." + self.group if self.group else self.plural


ALL = ("all",)
RESOURCES = [
    Resource("", "v1", "pods", "Pod", True, ["po"], ["status"], categories=ALL),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], ["status"]),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"], ["status"]),
    Resource("", "v1", "nodes", "Node", False, ["no"], ["status"]),
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"], ["status"]),
    Resource("", "v1", "services", "Service", True, ["svc"], ["status"], categories=ALL),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"], status=False),
    Resource("", "v1", "secrets", "Secret", True, status=False),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"], status=False),
    Resource("", "v1", "events", "Event", True, ["ev"], status=False),
    Resource("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["status", "scale"], categories=ALL),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["status", "scale"], categories=ALL),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["status"], categories=ALL),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["status", "scale"], categories=ALL),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"], status=False),
    Resource("argoproj.io", "v1alpha1", "applications", "Application", True, ["app", "apps"],
             status=False, custom=True, categories=("argo",)),
    Resource("argoproj.io", "v1alpha1", "appprojects", "AppProject", True, ["appproj"],
             status=False, custom=True, categories=("argo",)),
]
BY_PLURAL = {(r.group, r.plural): r for r in RESOURCES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
GROUPS = {}
for _r in RESOURCES:
    GROUPS.setdefault(_r.group, _r.version)


OPENAPI_HASH = "ferrytestdouble1"


def gv_path(group, version):
    return "apis/%s/%s" % (group, version) if group else "api/" + version


def openapi_v3(group, version):
    """The least of an OpenAPI v3 document that kubectl reads: for each kind, an item path
    whose PATCH takes the fieldValidation query parameter, so kubectl leaves validation to the
    server (which does not validate: the double accepts what it is sent). There is no
    requestBody, so `kubectl apply` computes strategic patches from the types compiled into it."""
    paths = {}
    for r in RESOURCES:
        if r.group != group:
            continue
        item = "/%s/%s%s/{name}" % (gv_path(group, version), "namespaces/{namespace}/" if r.namespaced else "", r.plural)
        paths[item] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (ferry test double)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def group_info(group, version):
    gv = {"groupVersion": group + "/" + version, "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def resource_list(group):
    out = []
    for r in RESOURCES:
        if r.group != group:
            continue
        entry = {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": ["create", "delete", "deletecollection", "get", "list",
                                           "patch", "update", "watch"]}
        if r.short:
            entry["shortNames"] = r.short
        if r.categories:
            entry["categories"] = r.categories
        out.append(entry)
        for sub in r.subresources:
            s = {"name": r.plural + "/" + sub, "singularName": "", "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                s.update(kind="Scale", group="autoscaling", version="v1")
            out.append(s)
    return out
