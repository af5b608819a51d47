#!/usr/bin/env python3
"""A Kubernetes API server TEST DOUBLE for ferry's tests: one process is one "cluster".

It is not Kubernetes. It serves, over HTTPS with a bearer token, the parts of the API that the
real kubectl (v1.20 to v1.32) uses for the resources ferry touches, keeps the objects in memory
(started from recorded objects in the documented JSON shapes of Kubernetes 1.28+), writes the
whole current state back to a file after every change and logs every request, so a test can run
the real `kubectl` and then assert on the objects and on the requests it made.

Served (the legacy discovery form, which kubectl 1.32 falls back to when the server does not
answer the aggregated form):
  /version, /api, /api/v1, /apis, /apis/GROUP, /apis/GROUP/VERSION;
  core v1 pods, persistentvolumeclaims, persistentvolumes, nodes, namespaces, services,
  configmaps, secrets, serviceaccounts, events; apps/v1 deployments, statefulsets, daemonsets,
  replicasets (with /scale where Kubernetes has it); storage.k8s.io/v1 storageclasses;
  argoproj.io/v1alpha1 applications and appprojects (namespaced custom resources);
  GET, LIST (namespaced and across namespaces; labelSelector =, ==, !=, in, notin, exists, !key;
  fieldSelector on any dotted field, e.g. metadata.name, spec.nodeName, status.phase), watch
  (the current matching objects as ADDED, then MODIFIED/DELETED as they change, until
  timeoutSeconds; resourceVersion to resume, sendInitialEvents with the initial-events-end
  bookmark), POST (uid, resourceVersion, creationTimestamp, generation, generateName,
  409 AlreadyExists, 404 for a missing namespace), PUT (409 Conflict on a stale
  resourceVersion), PATCH (merge, strategic merge for the list keys kubectl's patches use, JSON
  patch; strategic merge on a custom resource is 415 as on a real server), DELETE (a Status;
  the garbage collector removes what the object owned), the /status and /scale subresources;
  errors as Kubernetes Status objects with the real messages; Table output for `kubectl get`
  (name, status, age columns only); /openapi/v3 with, per group version, the fieldValidation
  parameter on each kind's PATCH and nothing else (kubectl 1.25+ then leaves validation to the
  server, which does not validate), /openapi/v2 without definitions (kubectl 1.20 then validates
  nothing); `apply` computes strategic patches from the types compiled into kubectl.

Files: this one (the store, HTTP, start-up), kube_resources.py (the resources, discovery,
OpenAPI), kube_objects.py (selectors, patches, Status errors), kube_emulation.py (below).

Emulated, in kube_emulation.py (synchronously, after every change: there is no delay):
  Deployments -> a ReplicaSet per pod template -> pods; StatefulSets -> pods NAME-0..N-1 and the
  PVCs of their volumeClaimTemplates; DaemonSets -> a pod on every node whose taints they
  tolerate; status (replicas, readyReplicas, updatedReplicas, availableReplicas,
  observedGeneration) kept so `kubectl rollout status` completes; a scheduler (spec.nodeName if
  set, else the first schedulable node that the pod tolerates, matches and whose PVs' node
  affinity allows); a kubelet that makes a scheduled pod Running and Ready (podIP 127.0.0.1)
  once its PVCs are bound; the PV controller and a provisioner (Immediate classes bind at
  creation, WaitForFirstConsumer ones when their first pod is scheduled: PV pvc-<uid> with the
  class's provisioner as CSI driver and node affinity to that node); reclaim (Delete or
  Released); and, for --kubelet-root NODE=DIR, kubelet's volume tree of each running pod
  (DIR/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount -> the PV's data directory, or
  volumeDevices/ for block PVs), removed when the pod goes.
Graceful termination is shortened: a deleted pod is gone at once, or with
--pod-termination-seconds S it carries a deletionTimestamp for S seconds first.
Not emulated: admission beyond the default storage class, RBAC, quotas, finalizers, server-side apply, Events, real containers.
"""
import argparse
import copy
import json
import os
import re
import secrets
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_emulation  # noqa: E402
from kube_objects import (ApiError, json_patch, labels_match, fields_match, merge_patch,  # noqa: E402
                          not_found, now_rfc3339, status_object, strategic_merge_patch)
from kube_resources import (BY_KIND, BY_PLURAL, GROUPS, OPENAPI_HASH, group_info,  # noqa: E402
                            gv_path, openapi_v3, resource_list)


# ---- the store -------------------------------------------------------------------------------

class Store:
    """All objects, by (group, plural, namespace or "", name). One lock; every change goes
    through put/remove, bumps the resourceVersion, appends an event and wakes watchers."""

    def __init__(self, state_path):
        self.lock = threading.Condition()
        self.objects = {}
        self.rv = 0
        self.events = []  # (rv, type, key, object)
        self.state_path = state_path
        self.changed = False

    def key(self, res, ns, name):
        return (res.group, res.plural, ns if res.namespaced else "", name)

    def get(self, res, ns, name):
        return self.objects.get(self.key(res, ns, name))

    def list(self, res, ns=None):
        return [o for (g, p, n, _), o in sorted(self.objects.items())
                if g == res.group and p == res.plural and (ns is None or n == ns)]

    def put(self, res, obj, event=None):
        meta = obj["metadata"]
        key = self.key(res, meta.get("namespace", ""), meta["name"])
        if event is None:
            event = "MODIFIED" if key in self.objects else "ADDED"
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        self.objects[key] = obj
        self.events.append((self.rv, event, key, copy.deepcopy(obj)))
        self.changed = True
        self.lock.notify_all()
        return obj

    def remove(self, res, ns, name):
        key = self.key(res, ns, name)
        obj = self.objects.pop(key)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, "DELETED", key, gone))
        self.changed = True
        self.lock.notify_all()
        return obj

    def save(self):
        if not self.changed or not self.state_path:
            return
        self.changed = False
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump([o for _, o in sorted(self.objects.items())], f, indent=1)
        os.replace(tmp, self.state_path)


def new_metadata(meta, namespace):
    meta = dict(meta)
    if namespace:
        meta["namespace"] = namespace
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(
            secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    return meta


class Server:
    def __init__(self, args):
        self.args = args
        self.store = Store(args.state)
        self.token = args.token
        self.request_log = open(args.requests, "a") if args.requests else None
        self.log_lock = threading.Lock()
        self.by_plural = BY_PLURAL
        self.termination_s = args.pod_termination_seconds
        self.emulation = kube_emulation.Emulation(self, dict(args.kubelet_root), args.data_root)

    # Creation as the API server does it: metadata, defaults, admission, then the controllers.
    def create(self, res, ns, body, initial=False):
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a valid %s" % res.kind)
        if res.namespaced:
            ns = ns or body["metadata"].get("namespace") or "default"
            if body["metadata"].get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                               "match the namespace sent on the request")
            if not initial and ns not in ("default",) and self.store.get(BY_PLURAL[("", "namespaces")], "", ns) is None:
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                               {"name": ns, "kind": "namespaces"})
        meta = new_metadata(body["metadata"], ns if res.namespaced else "")
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "%s.%s \"\" is invalid: metadata.name: Required value: name or "
                           "generateName is required" % (res.kind, res.group or "core"))
        if self.store.get(res, ns, meta["name"]) is not None:
            raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.qualified, meta["name"]),
                           {"name": meta["name"], "group": res.group, "kind": res.plural})
        obj = copy.deepcopy(body)
        if initial:
            for k, v in body["metadata"].items():  # recorded objects keep their uid and time
                if k in ("uid", "creationTimestamp"):
                    meta[k] = v
        obj["metadata"] = meta
        if "spec" in obj or res.custom:
            meta.setdefault("generation", 1)
        kube_emulation.default(res, obj, self.store)
        if not initial and res.status and res.kind not in ("Namespace", "Node", "Service"):
            obj.pop("status", None)
        return self.store.put(res, obj, "ADDED")

    def update(self, res, ns, name, body, sub=None):
        cur = self.store.get(res, ns, name)
        if cur is None:
            raise not_found(res, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != cur["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has '
                           'been modified; please apply your changes to the latest version and try '
                           'again' % (res.qualified, name), {"name": name, "group": res.group, "kind": res.plural})
        new = copy.deepcopy(body)
        if sub == "status":
            new = dict(copy.deepcopy(cur), status=new.get("status", {}))
        else:
            meta = dict(new.get("metadata") or {})
            for k in ("uid", "creationTimestamp", "namespace", "generation", "name"):
                if k in cur["metadata"]:
                    meta[k] = cur["metadata"][k]
            new["metadata"] = meta
            if res.status and "status" in cur:
                new["status"] = cur["status"]
            elif res.status:
                new.pop("status", None)
            if new.get("spec") != cur.get("spec") and "generation" in cur["metadata"]:
                meta["generation"] = cur["metadata"]["generation"] + 1
            kube_emulation.default(res, new, self.store)
        if new == cur:
            return cur
        return self.store.put(res, new, "MODIFIED")

    def delete(self, res, ns, name):
        obj = self.store.get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        if res.kind == "Pod" and self.termination_s > 0:
            return self.terminate(res, obj)
        return self.store.remove(res, ns, name)

    def terminate(self, res, pod):
        """A pod's graceful termination, shortened: deletionTimestamp now, gone after
        --pod-termination-seconds (its volumes stay published until then)."""
        meta = pod["metadata"]
        if "deletionTimestamp" in meta:
            return pod
        meta["deletionTimestamp"] = now_rfc3339()
        meta["deletionGracePeriodSeconds"] = max(1, int(round(self.termination_s)))
        self.store.put(res, pod, "MODIFIED")
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]

        def finish():
            with self.store.lock:
                cur = self.store.get(res, ns, name)
                if cur is not None and cur["metadata"]["uid"] == uid:
                    self.store.remove(res, ns, name)
                    self.settle()
        timer = threading.Timer(self.termination_s, finish)
        timer.daemon = True
        timer.start()
        return pod

    def settle(self):
        self.emulation.reconcile()
        self.store.save()

    def log_request(self, entry):
        if self.request_log:
            with self.log_lock:
                self.request_log.write(json.dumps(entry) + "\n")
                self.request_log.flush()


# ---- HTTP ------------------------------------------------------------------------------------

def parse_path(path):
    """(group, version, namespace, plural, name, subresource) of a resource path, or None."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in BY_PLURAL:
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return (group, version, ns, rest[0], rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-kube-apiserver-test-double"

    def log_message(self, fmt, *args):  # the request log is ours; stderr stays quiet
        pass

    def setup(self):
        super().setup()
        # Headers and body are two writes: without this, Nagle's algorithm holds the body until
        # the client's delayed ACK, 40 ms a response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def api(self):
        return self.server.api

    def send_json(self, code, obj, content_type="application/json"):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def send_error_status(self, e):
        self.send_json(e.code, status_object(e.code, e.reason, e.message, e.details))

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.api.log_request({"time": round(time.time(), 3), "method": method, "path": url.path, "query": query,
                              "content_type": self.headers.get("Content-Type", ""),
                              "accept": self.headers.get("Accept", ""), "body": body})
        if self.headers.get("Authorization") != "Bearer " + self.api.token:
            self.send_json(401, status_object(401, "Unauthorized", "Unauthorized"))
            return
        try:
            self.route(method, url.path, query, body)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        except Exception as e:  # a request the double does not handle: say so, keep serving
            traceback.print_exc()
            self.send_error_status(ApiError(500, "InternalError", "the API server test double failed on "
                                            "%s %s: %r (see its stderr)" % (method, url.path, e)))

    def route(self, method, path, query, body):
        if method == "GET" and path in ("/version", "/version/"):
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                                        "gitCommit": "ferry-test-double", "gitTreeState": "clean",
                                        "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
                                        "compiler": "gc", "platform": "linux/amd64"})
        if method == "GET" and self.discovery(path):
            return None
        if method == "GET" and path.rstrip("/") == "/openapi/v3":
            return self.send_json(200, {"paths": {
                gv_path(g, v): {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (gv_path(g, v), OPENAPI_HASH)}
                for g, v in GROUPS.items()}})
        if method == "GET" and path.startswith("/openapi/v3/"):
            for g, v in GROUPS.items():
                if path == "/openapi/v3/" + gv_path(g, v):
                    return self.send_json(200, openapi_v3(g, v))
        if method == "GET" and path.rstrip("/") == "/openapi/v2":
            return self.openapi_v2()
        if path.startswith("/openapi/"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        parsed = parse_path(path)
        if parsed is None or (parsed[0], parsed[3]) not in BY_PLURAL:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group, version, ns, plural, name, sub = parsed
        res = BY_PLURAL[(group, plural)]
        if version != res.version or (sub and sub not in res.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not res.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return self.watch(res, ns, query)
            return self.list(res, ns, query)
        with self.api.store.lock:
            out, code = self.mutate_or_get(method, res, ns, name, sub, query, body)
            if method != "GET":
                self.api.settle()
                if out.get("kind") != "Status" and out.get("kind") != "Scale":
                    out = self.api.store.get(res, ns, out["metadata"]["name"]) or out
            out = copy.deepcopy(out)
        self.send_json(code, out)

    def openapi_v2(self):
        """An OpenAPI v2 document without definitions, for kubectl before 1.25 (Debian's 1.20):
        it validates client-side only the kinds the document defines, so it validates nothing,
        and `apply` falls back to the patch rules compiled into it. kubectl asks for protobuf:
        the gnostic Document {swagger: "2.0", info: {title}}, encoded by hand."""
        if "protobuf" not in self.headers.get("Accept", ""):
            return self.send_json(200, {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                                        "paths": {}, "definitions": {}})
        title = b"Kubernetes"
        info = b"\x0a" + bytes([len(title)]) + title  # Info.title = 1
        data = b"\x0a\x032.0" + b"\x12" + bytes([len(info)]) + info  # Document.swagger = 1, .info = 2
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    def mutate_or_get(self, method, res, ns, name, sub, query, body):
        api, store = self.api, self.api.store
        if method == "POST" and name is None:
            return api.create(res, ns, body), 201
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                           "requested resource")
        cur = store.get(res, ns, name)
        if sub == "scale":
            return self.scale(method, res, ns, name, cur, body)
        if method == "GET":
            if cur is None:
                raise not_found(res, name)
            return cur, 200
        if method == "PUT":
            return api.update(res, ns, name, body, sub), 200
        if method == "PATCH":
            if cur is None:
                raise not_found(res, name)
            return api.update(res, ns, name, self.patched(res, cur, body), sub), 200
        if method == "DELETE":
            obj = api.delete(res, ns, name)
            return status_object(200, "", "", {"name": name, "group": res.group, "kind": res.plural,
                                               "uid": obj["metadata"]["uid"]}), 200
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def patched(self, res, cur, body):
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        base = copy.deepcopy(cur)
        base["metadata"].pop("resourceVersion", None)
        if kind == "application/merge-patch+json":
            return merge_patch(base, body)
        if kind == "application/strategic-merge-patch+json":
            if res.custom:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml")
            return strategic_merge_patch(base, body)
        if kind == "application/json-patch+json":
            return json_patch(base, body)
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format "
                       "- accepted media types include: application/json-patch+json, "
                       "application/merge-patch+json, application/strategic-merge-patch+json")

    def scale(self, method, res, ns, name, cur, body):
        if cur is None:
            raise not_found(res, name)
        scale = kube_emulation.scale_of(cur)
        if method == "GET":
            return scale, 200
        if method == "PATCH":
            kind = self.headers.get("Content-Type", "").split(";")[0].strip()
            new = json_patch(scale, body) if kind == "application/json-patch+json" else merge_patch(scale, body)
        elif method == "PUT":
            new = body
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        replicas = (new.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", 'Scale.autoscaling "%s" is invalid: spec.replicas: Invalid '
                           'value: %s: must be greater than or equal to 0' % (name, replicas))
        obj = copy.deepcopy(cur)
        obj["spec"]["replicas"] = replicas
        self.api.update(res, ns, name, obj)
        return kube_emulation.scale_of(self.api.store.get(res, ns, name)), 200

    def selected(self, res, ns, query):
        items = self.api.store.list(res, ns if res.namespaced else None)
        return [o for o in items if labels_match(o["metadata"].get("labels"), query.get("labelSelector"))
                and fields_match(o, query.get("fieldSelector"))]

    def list(self, res, ns, query):
        with self.api.store.lock:
            items = copy.deepcopy(self.selected(res, ns, query))
            rv = str(self.api.store.rv)
        accept = self.headers.get("Accept", "")
        if "as=Table" in accept:
            return self.send_json(200, kube_emulation.table(items, rv))
        self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version,
                             "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self, res, ns, query):
        store = self.api.store
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event_type, obj):
            data = (json.dumps({"type": event_type, "object": obj}) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def matches(key, obj):
            return (key[0], key[1]) == (res.group, res.plural) and (
                ns is None or not res.namespaced or key[2] == ns) and labels_match(
                obj["metadata"].get("labels"), query.get("labelSelector")) and fields_match(
                obj, query.get("fieldSelector"))

        with store.lock:
            start = query.get("resourceVersion", "")
            initial = query.get("sendInitialEvents") == "true" or start in ("", "0")
            pending = [("ADDED", copy.deepcopy(o)) for o in self.selected(res, ns, query)] if initial else []
            if query.get("sendInitialEvents") == "true":
                pending.append(("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": {
                    "resourceVersion": str(store.rv), "annotations": {"k8s.io/initial-events-end": "true"}}}))
            seen = store.rv if initial else int(start)
        try:
            while True:
                for event_type, obj in pending:
                    send(event_type, obj)
                pending = []
                with store.lock:
                    while store.rv == seen and time.monotonic() < deadline and not self.client_gone():
                        store.lock.wait(0.2)
                    for rv, event_type, key, obj in store.events:
                        if rv > seen and matches(key, obj):
                            pending.append((event_type, copy.deepcopy(obj)))
                    seen = store.rv
                if not pending and (time.monotonic() >= deadline or self.client_gone()):
                    break
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True

    def client_gone(self):
        # A watching client sends nothing more; a readable socket means it closed.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def discovery(self, path):
        path = path.rstrip("/")
        port = self.server.server_address[1]
        if path == "/api":
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % port}]})
            return True
        if path == "/apis":
            self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                group_info(g, v) for g, v in sorted(GROUPS.items()) if g]})
            return True
        m = re.fullmatch(r"/apis/([^/]+)", path)
        if m and m.group(1) in GROUPS:
            self.send_json(200, dict(group_info(m.group(1), GROUPS[m.group(1)]), kind="APIGroup", apiVersion="v1"))
            return True
        m = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/([^/]+)", path)
        if m:
            group = m.group(2) or ""
            version = m.group(1) or m.group(3)
            if GROUPS.get(group) != version:
                return False
            self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                 "groupVersion": (group + "/" if group else "") + version,
                                 "resources": resource_list(group)})
            return True
        return False


# ---- start-up --------------------------------------------------------------------------------

def ensure_tls(tls_dir):
    os.makedirs(tls_dir, exist_ok=True)
    ca, ca_key = os.path.join(tls_dir, "ca.crt"), os.path.join(tls_dir, "ca.key")
    cert, key = os.path.join(tls_dir, "server.crt"), os.path.join(tls_dir, "server.key")
    if os.path.exists(cert) and os.path.exists(key) and os.path.exists(ca):
        return ca, cert, key

    def run(*argv):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "30", "-subj", "/CN=ferry-test-double-ca")
    csr = os.path.join(tls_dir, "server.csr")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver")
    ext = os.path.join(tls_dir, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "30", "-extfile", ext)
    return ca, cert, key


def write_kubeconfig(path, context, port, ca, token, namespace):
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": context, "cluster": {"server": "https://127.0.0.1:%d" % port,
                                                          "certificate-authority": ca}}],
              "users": [{"name": context + "-admin", "user": {"token": token}}],
              "contexts": [{"name": context, "context": {"cluster": context, "user": context + "-admin",
                                                          "namespace": namespace}}],
              "current-context": context}
    with open(path + ".tmp", "w") as f:
        json.dump(config, f, indent=1)
    os.replace(path + ".tmp", path)


def load_initial(server, path):
    objects = []
    if path:
        with open(path) as f:
            objects = json.load(f)
    if isinstance(objects, dict):
        objects = objects.get("items", [])
    store = server.store
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        if not any(o.get("kind") == "Namespace" and o["metadata"]["name"] == name for o in objects):
            objects.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Storage classes and nodes first: the emulation reads them when the others arrive.
    order = {"Namespace": 0, "StorageClass": 1, "Node": 2, "PersistentVolume": 3}
    for obj in sorted(objects, key=lambda o: order.get(o.get("kind"), 9)):
        res = BY_KIND.get((obj.get("apiVersion"), obj.get("kind")))
        if res is None:
            sys.exit("kube_apiserver: no resource for apiVersion %s kind %s" % (obj.get("apiVersion"), obj.get("kind")))
        with store.lock:
            server.create(res, obj["metadata"].get("namespace"), obj, initial=True)
    with store.lock:
        server.settle()
        store.changed = True
        store.save()


def watch_parent():
    """The double ends with the test that started it, even one killed without stopping it."""
    parent = os.getppid()

    def loop():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=loop, daemon=True).start()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objects", help="initial objects: a JSON list of Kubernetes objects")
    p.add_argument("--state", required=True, help="the current objects are written here after every change")
    p.add_argument("--requests", help="one JSON line per request: method, path, query, body")
    p.add_argument("--port-file", required=True)
    p.add_argument("--tls-dir", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--context", required=True)
    p.add_argument("--namespace", default="default", help="the context's namespace")
    p.add_argument("--token", default=None, help="the bearer token (default: a random one)")
    p.add_argument("--kubelet-root", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                   metavar="NODE=DIR")
    p.add_argument("--pod-termination-seconds", type=float, default=0,
                   help="how long a deleted pod stays, terminating (default 0: gone at once)")
    p.add_argument("--data-root", default=None, help="where provisioned PVs get their data directory")
    args = p.parse_args()
    args.token = args.token or secrets.token_hex(16)
    api = Server(args)
    load_initial(api, args.objects)
    watch_parent()
    ca, cert, key = ensure_tls(args.tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.api = api
    port = httpd.server_address[1]
    write_kubeconfig(args.kubeconfig, args.context, port, ca, args.token, args.namespace)
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.replace(args.port_file + ".tmp", args.port_file)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
