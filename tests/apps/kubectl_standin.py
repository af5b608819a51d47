#!/usr/bin/env python3
"""A recorded kubectl STAND-IN for the unit test of ferry's Kubernetes hook (coordinator/kube_hook.h).

It is not kubectl and talks to no cluster: it keeps a few Deployments and StatefulSets per
context and namespace in a JSON file ($FERRY_KUBECTL_STATE), answers the handful of commands the
hook runs the way kubectl does (same arguments, same output shapes, non-zero exit and a message
on stderr for errors), and appends every command line it was given to $FERRY_KUBECTL_LOG, so the
test can assert both the command lines and the replica bookkeeping.

State: {"contexts": {CTX: {NS: {"objects": {"deployment/db": {"replicas": 2,
         "labels": {...}, "match": {...}, "annotations": {...}, "pods": [...],
         "terminating": 0}}}}}, "terminating_polls": 2}
Pods of a workload scaled to 0 stay ("terminating") for `terminating_polls` `get pods` calls.
"""
import json
import os
import sys


def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(1)


def matches(labels, selector):
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def main():
    args = sys.argv[1:]
    state_path = os.environ["FERRY_KUBECTL_STATE"]
    with open(os.environ["FERRY_KUBECTL_LOG"], "a") as log:
        log.write(" ".join(args) + "\n")
    with open(state_path) as f:
        state = json.load(f)

    def option(name):
        if name in args:
            i = args.index(name)
            value = args[i + 1]
            del args[i:i + 2]
            return value
        return None

    context, namespace = option("--context"), option("--namespace")
    if context not in state["contexts"]:
        fail('context "%s" does not exist' % context)
    objects = state["contexts"][context].get(namespace, {}).get("objects", {})
    selector = option("--selector")
    output = option("--output")

    def obj(ref):
        if ref not in objects:
            fail('%ss.apps "%s" not found' % tuple(ref.split("/")))
        return objects[ref]

    verb = args[0]
    if verb == "get" and args[1] == "deployments,statefulsets":
        items = []
        for ref, o in sorted(objects.items()):
            if not matches(o["labels"], selector):
                continue
            kind = {"deployment": "Deployment", "statefulset": "StatefulSet"}[ref.split("/")[0]]
            items.append({"apiVersion": "apps/v1", "kind": kind,
                          "metadata": {"name": ref.split("/")[1], "namespace": namespace, "labels": o["labels"],
                                       "annotations": o["annotations"]},
                          "spec": {"replicas": o["replicas"], "selector": {"matchLabels": o["match"]}}})
        assert output == "json"
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    elif verb == "get" and args[1] == "pods":
        for ref, o in sorted(objects.items()):
            if not matches(o["match"], selector):
                continue
            if o["replicas"] == 0 and o["pods"]:
                if o.get("terminating", 0) <= 0:
                    o["pods"] = []
                else:
                    o["terminating"] -= 1
            for pod in o["pods"]:
                print("pod/" + pod)
    elif verb == "annotate":
        overwrite = "--overwrite" in args
        rest = [a for a in args[1:] if a != "--overwrite"]
        o = obj(rest[0])
        for term in rest[1:]:
            if term.endswith("-"):
                o["annotations"].pop(term[:-1], None)
            else:
                key, _, value = term.partition("=")
                if key in o["annotations"] and not overwrite:
                    fail("'%s' already has a value (%s), and --overwrite is false" % (key, o["annotations"][key]))
                o["annotations"][key] = value
    elif verb == "scale":
        o = obj(args[1])
        replicas = int(args[2].split("=")[1])
        o["replicas"] = replicas
        if replicas == 0:
            o["terminating"] = state.get("terminating_polls", 0)
        else:
            o["pods"] = ["%s-%d" % (args[1].split("/")[1], i) for i in range(replicas)]
        print(args[1] + " scaled")
    elif verb == "rollout" and args[1] == "status":
        o = obj(args[2])
        print('%s "%s" successfully rolled out' % tuple(args[2].split("/")))
    else:
        fail("the stand-in does not know: " + " ".join(sys.argv[1:]))

    with open(state_path, "w") as f:
        json.dump(state, f)


main()
