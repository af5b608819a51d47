"""Pure functions on Kubernetes objects for the API server TEST DOUBLE (kube_apiserver.py):
errors as Status objects, label and field selectors, merge / strategic merge / JSON patches.
"""
import copy
import re
import time


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_object(code, reason, message, details=None):
    out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status":
           "Success" if code < 300 else "Failure", "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    if code < 300:
        out.pop("message")
        out.pop("reason")
    return out


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name),
                    {"name": name, "group": res.group, "kind": res.plural})


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- selectors -------------------------------------------------------------------------------

def split_terms(selector):
    terms, depth, cur = [], 0, ""
    for c in selector:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        terms.append(cur.strip())
    return terms


def label_term_matches(labels, term):
    m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
    if m:
        values = {v.strip() for v in m.group(3).split(",")}
        has = m.group(1) in labels and labels[m.group(1)] in values
        return has if m.group(2) == "in" else not has
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (s.strip() for s in term.split(op, 1))
            return (labels.get(key) != value) if op == "!=" else (labels.get(key) == value)
    if term.startswith("!"):
        return term[1:].strip() not in labels
    return term in labels


def labels_match(labels, selector):
    return all(label_term_matches(labels or {}, t) for t in split_terms(selector or ""))


def field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part, "")
    return "" if cur is None else str(cur)


def fields_match(obj, selector):
    for term in split_terms(selector or ""):
        neg = "!=" in term
        key, value = re.split(r"!=|==|=", term, maxsplit=1)
        if (field_value(obj, key.strip()) == value.strip()) == neg:
            return False
    return True


# ---- patches ---------------------------------------------------------------------------------

def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


MERGE_KEYS = ("name", "type", "mountPath", "devicePath", "containerPort", "port", "key", "ip", "topologyKey")


def strategic_merge_patch(target, patch):
    """Merge patch plus what kubectl's strategic patches use: lists of objects merged by their
    key (name, type, mountPath, ...), $patch: delete/replace, $setElementOrder and $retainKeys
    directives (dropped)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if not k.startswith("$")}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = merge_list(out[k], v)
        else:
            out[k] = strategic_merge_patch(out.get(k), v) if isinstance(v, dict) else copy.deepcopy(v)
    return out


def merge_list(current, patch):
    dicts = all(isinstance(x, dict) for x in current + patch)
    key = None
    if dicts and patch:
        for k in MERGE_KEYS:
            if all(k in x for x in patch):
                key = k
                break
    if key is None:
        return [x for x in copy.deepcopy(patch) if not (isinstance(x, dict) and "$patch" in x)]
    out = copy.deepcopy(current)
    for item in patch:
        index = next((i for i, x in enumerate(out) if x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


def pointer(path):
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)

    def walk(parts):
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def get(parts):
        cur = doc
        for p in parts:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def add(parts, value):
        parent, last = walk(parts)
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    def remove(parts):
        parent, last = walk(parts)
        return parent.pop(int(last) if isinstance(parent, list) else last)

    for op in ops:
        try:
            parts = pointer(op["path"])
            kind = op["op"]
            if kind == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "test":
                if get(parts) != op["value"]:
                    raise ApiError(422, "Invalid", "the server rejected our request due to an error "
                                   "in our request: testing value %s failed" % op["path"])
            elif kind in ("move", "copy"):
                source = pointer(op["from"])
                value = copy.deepcopy(get(source))
                if kind == "move":
                    remove(source)
                add(parts, value)
            else:
                raise KeyError(kind)
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                           "request: doc is missing path: %s" % op.get("path"))
    return doc
