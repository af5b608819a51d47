"""The controllers, scheduler and kubelet that the Kubernetes API server TEST DOUBLE
(kube_apiserver.py) emulates, synchronously after every change. This is an emulation for tests,
not Kubernetes: each loop does the least that makes the objects look as a real cluster's would
once it settled (see kube_apiserver.py's header for the list, and what is not emulated).
"""
import copy
import hashlib
import json
import os
import secrets
import shutil
import time

POD_IP = "127.0.0.1"
DATA_DIR_ANNOTATION = "test.ferry.io/data-dir"
SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def suffix(n=5):
    return "".join(secrets.choice(SUFFIX) for _ in range(n))


def default(res, obj, store):
    """What the API server's defaulting and admission do to a new or updated object."""
    spec = obj.setdefault("spec", {}) if res.kind not in ("StorageClass", "ConfigMap", "Secret",
                                                          "ServiceAccount", "Event") else None
    if res.kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        spec.setdefault("replicas", 1)
    if res.kind == "Deployment":
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    if res.kind == "StatefulSet":
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    if res.kind == "DaemonSet":
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    if res.kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")
        if "storageClassName" not in spec:
            for sc in store_list(store, "storage.k8s.io", "storageclasses"):
                if (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
                    spec["storageClassName"] = sc["metadata"]["name"]
    if res.kind == "PersistentVolume":
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    if res.kind == "StorageClass":
        obj.setdefault("volumeBindingMode", "Immediate")
        obj.setdefault("reclaimPolicy", "Delete")
    if res.kind == "Pod":
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
    if res.kind == "Namespace":
        obj.setdefault("status", {"phase": "Active"})
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def store_list(store, group, plural, ns=None):
    return [o for (g, p, n, _), o in sorted(store.objects.items())
            if g == group and p == plural and (ns is None or n == ns)]


def scale_of(obj):
    meta = obj["metadata"]
    status = obj.get("status") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": status.get("replicas", 0),
                       "selector": selector_string(obj["spec"].get("selector"))}}


def selector_string(selector):
    return ",".join("%s=%s" % kv for kv in sorted((selector or {}).get("matchLabels", {}).items()))


def table(items, rv):
    """A meta.k8s.io/v1 Table of NAME, STATUS, AGE, as `kubectl get` asks for."""
    rows = []
    for o in items:
        status = (o.get("status") or {}).get("phase", "")
        meta = {k: v for k, v in o["metadata"].items() if k != "managedFields"}
        rows.append({"cells": [o["metadata"]["name"], status, o["metadata"].get("creationTimestamp", "")],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                {"name": "Status", "type": "string", "format": "", "description": "status.phase", "priority": 0},
                {"name": "Created At", "type": "date", "format": "", "description": "creationTimestamp", "priority": 0}],
            "rows": rows}


def tolerates(pod_spec, taints):
    for taint in taints or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        ok = False
        for t in pod_spec.get("tolerations") or []:
            if t.get("effect") and t["effect"] != taint["effect"]:
                continue
            if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
                ok = True
            elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
                ok = True
        if not ok:
            return False
    return True


def affinity_allows(pv, node):
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    if not terms:
        return True
    labels = dict(node["metadata"].get("labels") or {})
    labels.setdefault("kubernetes.io/hostname", node["metadata"]["name"])
    for term in terms:
        ok = True
        for e in term.get("matchExpressions", []):
            has = labels.get(e["key"]) in e.get("values", [])
            if (e["operator"] == "In" and not has) or (e["operator"] == "NotIn" and has):
                ok = False
            if e["operator"] == "Exists" and e["key"] not in labels:
                ok = False
        for f in term.get("matchFields", []):
            if f["key"] == "metadata.name" and (node["metadata"]["name"] in f.get("values", [])) != (f["operator"] == "In"):
                ok = False
        if ok:
            return True
    return False


def condition(type_, status="True", reason=None, message=None):
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


class Emulation:
    def __init__(self, server, kubelet_roots, data_root):
        self.server = server
        self.kubelet_roots = kubelet_roots  # node -> directory
        self.data_root = data_root

    @property
    def store(self):
        return self.server.store

    def res(self, group, plural):
        return self.server.by_plural[(group, plural)]

    def list(self, group, plural, ns=None):
        return store_list(self.store, group, plural, ns)

    def put(self, obj, group, plural):
        self.store.put(self.res(group, plural), obj)

    def create(self, group, plural, ns, obj):
        return self.server.create(self.res(group, plural), ns, obj)

    def reconcile(self):
        for _ in range(30):
            before = self.store.rv
            self.garbage_collect()
            self.deployments()
            self.replicated("apps", "replicasets", "ReplicaSet")
            self.statefulsets()
            self.daemonsets()
            self.claims()
            self.pods()
            self.kubelet_trees()
            if self.store.rv == before:
                return

    # ---- owners -------------------------------------------------------------------------

    def garbage_collect(self):
        uids = {o["metadata"]["uid"] for o in self.store.objects.values()}
        for key, o in list(self.store.objects.items()):
            owners = o["metadata"].get("ownerReferences") or []
            if owners and not any(r.get("uid") in uids for r in owners):
                if key[1] == "pods":
                    self.delete_pod(o)
                else:
                    self.store.remove(self.res(key[0], key[1]), key[2], key[3])
        namespaces = {o["metadata"]["name"] for o in self.list("", "namespaces")}
        for key in list(self.store.objects):
            if key[2] and key[2] not in namespaces:
                self.store.remove(self.res(key[0], key[1]), key[2], key[3])

    def owned(self, owner, group, plural):
        uid = owner["metadata"]["uid"]
        return [o for o in self.list(group, plural, owner["metadata"].get("namespace"))
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def delete_pod(self, pod):
        if pod["metadata"].get("deletionTimestamp"):
            return
        self.server.delete(self.res("", "pods"), pod["metadata"]["namespace"], pod["metadata"]["name"])

    @staticmethod
    def live(pods):  # not terminating
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    @staticmethod
    def owner_ref(owner):
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def new_pod(self, owner, name, extra_labels=None, node=None, volumes=None):
        template = copy.deepcopy(owner["spec"].get("template") or {})
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update(extra_labels or {})
        spec = template.get("spec") or {"containers": [{"name": "main", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        if volumes:
            spec["volumes"] = (spec.get("volumes") or []) + volumes
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                            "annotations": meta.get("annotations") or {}, "ownerReferences": [self.owner_ref(owner)]},
               "spec": spec}
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        return self.create("", "pods", owner["metadata"]["namespace"], pod)

    def set_status(self, obj, group, plural, status):
        merged = dict(obj.get("status") or {})
        merged.update(status)
        if merged != obj.get("status"):
            obj["status"] = merged
            self.put(obj, group, plural)

    @staticmethod
    def ready(pod):
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    # ---- workloads ----------------------------------------------------------------------

    def deployments(self):
        for d in self.list("apps", "deployments"):
            template = d["spec"].get("template") or {}
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
            pod_hash = "".join(SUFFIX[int(digest[i:i + 2], 16) % len(SUFFIX)] for i in range(0, 20, 2))
            sets = self.owned(d, "apps", "replicasets")
            current = None
            for rs in sets:
                if rs["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash:
                    current = rs
                elif rs["spec"].get("replicas") != 0:
                    rs["spec"]["replicas"] = 0
                    self.put(rs, "apps", "replicasets")
            want = d["spec"].get("replicas", 1)
            if current is None:
                tmpl = copy.deepcopy(template)
                tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
                selector = copy.deepcopy(d["spec"].get("selector") or {})
                selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
                current = self.create("apps", "replicasets", d["metadata"]["namespace"], {
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": d["metadata"]["name"] + "-" + pod_hash,
                                 "labels": dict(tmpl["metadata"]["labels"]),
                                 "ownerReferences": [self.owner_ref(d)]},
                    "spec": {"replicas": want, "selector": selector, "template": tmpl}})
            elif current["spec"].get("replicas") != want:
                current["spec"]["replicas"] = want
                self.put(current, "apps", "replicasets")
            pods = self.live([p for rs in self.owned(d, "apps", "replicasets") for p in self.owned(rs, "", "pods")])
            updated = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash]
            ready = sum(1 for p in pods if self.ready(p))
            status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": len(pods),
                      "updatedReplicas": len(updated), "readyReplicas": ready, "availableReplicas": ready,
                      "unavailableReplicas": max(0, want - ready)}
            status["conditions"] = [
                {"type": "Available", "status": "True" if ready >= want else "False",
                 "reason": "MinimumReplicasAvailable" if ready >= want else "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
            for k in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
                if not status[k]:
                    del status[k]
            if (d.get("status") or {}).get("conditions"):
                old = {c["type"]: c for c in d["status"]["conditions"]}
                status["conditions"] = [dict(old.get(c["type"], {}), **c) for c in status["conditions"]]
            self.replace_status(d, "apps", "deployments", status)

    def replace_status(self, obj, group, plural, status):
        if obj.get("status") != status:
            obj["status"] = status
            self.put(obj, group, plural)

    def replicated(self, group, plural, kind):
        for rs in self.list(group, plural):
            pods = self.live(self.owned(rs, "", "pods"))
            want = rs["spec"].get("replicas", 1)
            for p in pods[want:]:
                self.delete_pod(p)
            for _ in range(want - len(pods)):
                self.new_pod(rs, rs["metadata"]["name"] + "-" + suffix())
            pods = self.live(self.owned(rs, "", "pods"))
            ready = sum(1 for p in pods if self.ready(p))
            status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                      "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
            self.replace_status(rs, group, plural, {k: v for k, v in status.items() if v or k == "replicas"})

    def statefulsets(self):
        for sts in self.list("apps", "statefulsets"):
            ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
            want = sts["spec"].get("replicas", 1)
            revision = name + "-" + hashlib.sha256(json.dumps(sts["spec"].get("template") or {}, sort_keys=True)
                                                   .encode()).hexdigest()[:10]
            pods = {p["metadata"]["name"]: p for p in self.owned(sts, "", "pods")}
            for pname, p in pods.items():
                if int(pname.rsplit("-", 1)[1]) >= want:
                    self.delete_pod(p)
            for i in range(want):
                pname = "%s-%d" % (name, i)
                if pname in pods:
                    continue
                volumes = []
                for t in sts["spec"].get("volumeClaimTemplates") or []:
                    claim = "%s-%s-%d" % (t["metadata"]["name"], name, i)
                    if self.store.get(self.res("", "persistentvolumeclaims"), ns, claim) is None:
                        pvc = copy.deepcopy(t)
                        pvc.pop("status", None)
                        pvc.update(apiVersion="v1", kind="PersistentVolumeClaim")
                        pvc["metadata"] = {"name": claim, "labels": dict((sts["spec"].get("selector") or {}).get("matchLabels", {}))}
                        self.create("", "persistentvolumeclaims", ns, pvc)
                    volumes.append({"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
                self.new_pod(sts, pname, {"controller-revision-hash": revision,
                                          "statefulset.kubernetes.io/pod-name": pname,
                                          "apps.kubernetes.io/pod-index": str(i)}, volumes=volumes)
            pods = self.live(self.owned(sts, "", "pods"))
            ready = sum(1 for p in pods if self.ready(p))
            status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(pods),
                      "readyReplicas": ready, "currentReplicas": len(pods), "updatedReplicas": len(pods),
                      "availableReplicas": ready, "currentRevision": revision, "updateRevision": revision,
                      "collisionCount": 0}
            self.replace_status(sts, "apps", "statefulsets",
                                {k: v for k, v in status.items() if v or k in ("replicas", "collisionCount")})

    def daemonsets(self):
        nodes = self.list("", "nodes")
        for ds in self.list("apps", "daemonsets"):
            spec = (ds["spec"].get("template") or {}).get("spec") or {}
            wanted = [n["metadata"]["name"] for n in nodes if self.fits(spec, n)]
            pods = self.live(self.owned(ds, "", "pods"))
            by_node = {p["spec"].get("nodeName"): p for p in pods}
            for p in pods:
                if p["spec"].get("nodeName") not in wanted:
                    self.delete_pod(p)
            for node in wanted:
                if node not in by_node:
                    self.new_pod(ds, ds["metadata"]["name"] + "-" + suffix(), {"controller-revision-hash": "1"}, node=node)
            pods = self.live(self.owned(ds, "", "pods"))
            ready = sum(1 for p in pods if self.ready(p))
            status = {"currentNumberScheduled": len(pods), "desiredNumberScheduled": len(wanted),
                      "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": len(pods),
                      "numberAvailable": ready, "observedGeneration": ds["metadata"].get("generation", 1)}
            if len(wanted) > ready:
                status["numberUnavailable"] = len(wanted) - ready
            if not ready:
                del status["numberAvailable"]
            self.replace_status(ds, "apps", "daemonsets", status)

    def fits(self, pod_spec, node):
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
            return False
        # Required node affinity: any term whose matchFields (metadata.name) and matchExpressions
        # (labels; In and NotIn) all hold.
        required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
        if required:
            def holds(req, value):
                return (value in req.get("values", [])) == (req.get("operator") == "In")
            if not any(all(holds(f, node["metadata"]["name"]) for f in t.get("matchFields") or []
                           if f.get("key") == "metadata.name") and
                       all(holds(e, labels.get(e.get("key"))) for e in t.get("matchExpressions") or [])
                       for t in required):
                return False
        return tolerates(pod_spec, (node.get("spec") or {}).get("taints"))

    # ---- storage ------------------------------------------------------------------------

    def claims(self):
        for pvc in self.list("", "persistentvolumeclaims"):
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
            pv = None
            if pvc["spec"].get("volumeName"):
                pv = self.store.get(self.res("", "persistentvolumes"), "", pvc["spec"]["volumeName"])
            if pv is None:
                pv = next((v for v in self.list("", "persistentvolumes")
                           if ((v["spec"].get("claimRef") or {}).get("name"), (v["spec"].get("claimRef") or {}).get("namespace")) == (name, ns)), None)
            if pv is None:
                cls = self.store.get(self.res("storage.k8s.io", "storageclasses"), "", pvc["spec"].get("storageClassName") or "")
                node = (pvc["metadata"].get("annotations") or {}).get("volume.kubernetes.io/selected-node")
                if cls is not None and (cls.get("volumeBindingMode") == "Immediate" or node):
                    pv = self.provision(pvc, cls, node)
            if pv is None:
                self.set_status(pvc, "", "persistentvolumeclaims", {"phase": "Pending"})
                continue
            self.bind(pvc, pv)
        for pv in self.list("", "persistentvolumes"):
            ref = pv["spec"].get("claimRef")
            if not ref or (pv.get("status") or {}).get("phase") != "Bound":
                if not ref:
                    self.set_status(pv, "", "persistentvolumes", {"phase": "Available"})
                continue
            claim = self.store.get(self.res("", "persistentvolumeclaims"), ref.get("namespace"), ref.get("name"))
            if claim is None or (ref.get("uid") and claim["metadata"]["uid"] != ref["uid"]):
                if pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                    self.store.remove(self.res("", "persistentvolumes"), "", pv["metadata"]["name"])
                else:
                    self.set_status(pv, "", "persistentvolumes", {"phase": "Released"})

    def provision(self, pvc, cls, node):
        name = "pvc-" + pvc["metadata"]["uid"]
        size = pvc["spec"].get("resources", {}).get("requests", {}).get("storage", "1Gi")
        spec = {"capacity": {"storage": size}, "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy", "Delete"),
                "storageClassName": cls["metadata"]["name"], "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                "csi": {"driver": cls.get("provisioner", "csi.test.ferry.io"), "volumeHandle": name,
                        "fsType": "ext4"}}
        if spec["volumeMode"] == "Block":
            del spec["csi"]["fsType"]
        if node:
            spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
        annotations = {"pv.kubernetes.io/provisioned-by": cls.get("provisioner", "")}
        if self.data_root:
            data = os.path.join(self.data_root, name)
            if spec["volumeMode"] == "Block":
                with open(data, "ab") as f:
                    f.truncate(max(os.path.getsize(data), parse_quantity(size)))
            else:
                os.makedirs(data, exist_ok=True)
            annotations[DATA_DIR_ANNOTATION] = data
        return self.create("", "persistentvolumes", None, {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": annotations,
                         "finalizers": ["kubernetes.io/pv-protection"]}, "spec": spec})

    def bind(self, pvc, pv):
        pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": pvc["metadata"]["namespace"],
                                  "name": pvc["metadata"]["name"], "uid": pvc["metadata"]["uid"],
                                  "apiVersion": "v1", "resourceVersion": pvc["metadata"]["resourceVersion"]}
        pv["status"] = {"phase": "Bound"}
        self.put(pv, "", "persistentvolumes")
        pvc["spec"]["volumeName"] = pv["metadata"]["name"]
        ann = pvc["metadata"].setdefault("annotations", {})
        ann["pv.kubernetes.io/bind-completed"] = "yes"
        ann["pv.kubernetes.io/bound-by-controller"] = "yes"
        provisioner = (pv["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
        if provisioner:
            ann["volume.kubernetes.io/storage-provisioner"] = provisioner
        pvc["status"] = {"phase": "Bound", "accessModes": pv["spec"].get("accessModes"),
                         "capacity": dict(pv["spec"].get("capacity") or {})}
        self.put(pvc, "", "persistentvolumeclaims")

    # ---- scheduler and kubelet ----------------------------------------------------------

    def claims_of(self, pod):
        return [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes") or []
                if v.get("persistentVolumeClaim")]

    def pods(self):
        for pod in self.list("", "pods"):
            if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed") or \
                    pod["metadata"].get("deletionTimestamp"):
                continue
            if not pod["spec"].get("nodeName"):
                self.schedule(pod)
                continue
            self.start(pod)

    def schedule(self, pod):
        ns = pod["metadata"]["namespace"]
        claims = []
        for name in self.claims_of(pod):
            c = self.store.get(self.res("", "persistentvolumeclaims"), ns, name)
            if c is None:
                return self.unschedulable(pod, 'persistentvolumeclaim "%s" not found' % name)
            claims.append(c)
        nodes = self.list("", "nodes")
        for node in nodes:
            if (node.get("spec") or {}).get("unschedulable") or not self.fits(pod["spec"], node):
                continue
            pvs = [self.store.get(self.res("", "persistentvolumes"), "", c["spec"].get("volumeName", "")) for c in claims]
            if not all(pv is None or affinity_allows(pv, node) for pv in pvs):
                continue
            pod["spec"]["nodeName"] = node["metadata"]["name"]
            self.put(pod, "", "pods")
            return None
        return self.unschedulable(pod, "0/%d nodes are available: no node fits the pod (taints, "
                                  "nodeSelector, or volume node affinity)." % len(nodes))

    def unschedulable(self, pod, message):
        self.set_status(pod, "", "pods", {"phase": "Pending", "conditions": [
            condition("PodScheduled", "False", "Unschedulable", message)]})

    def start(self, pod):
        ns, node = pod["metadata"]["namespace"], pod["spec"]["nodeName"]
        bound = True
        for name in self.claims_of(pod):
            c = self.store.get(self.res("", "persistentvolumeclaims"), ns, name)
            if c is None:
                bound = False
                continue
            if (c.get("status") or {}).get("phase") != "Bound":
                bound = False
                ann = c["metadata"].setdefault("annotations", {})
                if ann.get("volume.kubernetes.io/selected-node") != node:
                    ann["volume.kubernetes.io/selected-node"] = node
                    self.put(c, "", "persistentvolumeclaims")
        containers = pod["spec"].get("containers") or []
        if not bound:
            self.set_status(pod, "", "pods", {"phase": "Pending", "conditions": [condition("PodScheduled")],
                                               "containerStatuses": [{"name": c.get("name"), "ready": False, "restartCount": 0,
                                                                      "image": c.get("image", ""), "imageID": "", "started": False,
                                                                      "state": {"waiting": {"reason": "ContainerCreating"}}} for c in containers]})
            return
        started = now()
        self.replace_status(pod, "", "pods", {
            "phase": "Running", "hostIP": POD_IP, "hostIPs": [{"ip": POD_IP}], "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}], "startTime": started, "qosClass": "BestEffort",
            "conditions": [condition(t) for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                   "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": c.get("name"), "ready": True, "restartCount": 0, "started": True,
                                   "image": c.get("image", ""), "imageID": "",
                                   "containerID": "containerd://" + secrets.token_hex(32),
                                   "state": {"running": {"startedAt": started}}} for c in containers]})

    def kubelet_trees(self):
        """kubelet's pods/<uid>/volumes tree for each running pod on a node with a root."""
        for node, root in self.kubelet_roots.items():
            pods_dir = os.path.join(root, "pods")
            os.makedirs(pods_dir, exist_ok=True)
            running = {}
            for pod in self.list("", "pods"):
                if pod["spec"].get("nodeName") == node and (pod.get("status") or {}).get("phase") == "Running":
                    running[pod["metadata"]["uid"]] = pod
            for uid in os.listdir(pods_dir):
                if uid not in running:
                    shutil.rmtree(os.path.join(pods_dir, uid), ignore_errors=True)
            for uid, pod in running.items():
                for name in self.claims_of(pod):
                    c = self.store.get(self.res("", "persistentvolumeclaims"), pod["metadata"]["namespace"], name)
                    pv = c and self.store.get(self.res("", "persistentvolumes"), "", c["spec"].get("volumeName", ""))
                    if pv:
                        self.mount(os.path.join(pods_dir, uid), pv)

    def mount(self, pod_dir, pv):
        name, spec = pv["metadata"]["name"], pv["spec"]
        data = (pv["metadata"].get("annotations") or {}).get(DATA_DIR_ANNOTATION) or \
            (spec.get("local") or {}).get("path") or (spec.get("hostPath") or {}).get("path")
        if not data:
            return
        plugin = "kubernetes.io~csi" if "csi" in spec else "kubernetes.io~local-volume" if "local" in spec else "kubernetes.io~host-path"
        if spec.get("volumeMode") == "Block":
            link = os.path.join(pod_dir, "volumeDevices", plugin, name)
        elif plugin == "kubernetes.io~csi":
            link = os.path.join(pod_dir, "volumes", plugin, name, "mount")
        else:
            link = os.path.join(pod_dir, "volumes", plugin, name)
        if os.path.lexists(link):
            return
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if plugin == "kubernetes.io~csi" and spec.get("volumeMode") != "Block":
            with open(os.path.join(os.path.dirname(link), "vol_data.json"), "w") as f:
                json.dump({"driverName": spec["csi"].get("driver"), "specVolID": name,
                           "volumeHandle": spec["csi"].get("volumeHandle", name)}, f)
        os.symlink(data, link)


def parse_quantity(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}
    for u, m in units.items():
        if q.endswith(u):
            return int(float(q[:-len(u)]) * m)
    return int(q)
