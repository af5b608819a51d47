// Checks the manifests in this directory against the Kubernetes API schemas, without a cluster.
// Run it through ./validate, which installs its npm packages and points NODE_PATH at them:
//
//   node validate.mjs [DIR]      (DIR: the manifests, default: this file's directory)
//
// DIR and each directory below it with a kustomization.yaml (coordinator/, coordinator/target/,
// coordinator/argocd/) is one kustomization. Every document of every *.yaml in it
// (kustomization.yaml aside) must be a known apiVersion/kind; it is checked with
// kubernetes-models' validate() (types, required fields, enums, formats) and, as `kubectl apply`
// does by default (strict field validation), for fields that the schema does not know (a
// misspelt field name). Each kustomization.yaml must list exactly the other *.yaml files beside
// it. Then the ferry-specific checks: the seccomp profile, the DaemonSet's capabilities, the
// coordinator Job's (one pod, non-root, the journal on its PVC), the RBAC rules (no wildcards,
// no secrets), the PSK file's mode. One line per object, named by its path under DIR; exit
// status 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// Resolve the packages from NODE_PATH (the cache ./validate installs into), not from this
// directory's ancestors: ESM `import` ignores NODE_PATH, createRequire() honours it.
const require = createRequire(path.join(process.cwd(), "noop.js"));
// The kubernetes-models class of apiVersion + kind: apps/v1 DaemonSet is
// kubernetes-models/apps/v1/DaemonSet, v1 Service kubernetes-models/v1/Service, ... (any
// built-in kind; a custom resource's is not there). Loaded when first needed.
const modelFor = (apiVersion, kind) => {
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion ?? "") || !/^[A-Z][A-Za-z0-9]*$/.test(kind ?? "")) return undefined;
  try {
    return require(`kubernetes-models/${apiVersion}/${kind}`)[kind];
  } catch {
    return undefined;
  }
};
let yaml;
try {
  yaml = require("js-yaml");
  require.resolve("kubernetes-models/v1/Namespace");
} catch (e) {
  console.error(`validate.mjs: cannot load js-yaml / kubernetes-models (${e.message.split("\n")[0]}); run ./validate`);
  process.exit(2);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.resolve(process.argv[2] ?? here);
const NAMESPACE = "ferry-system";
// Where a kustomization's namespaced objects must be when not in NAMESPACE, by its directory.
const NAMESPACE_OF_DIR = { "coordinator/argocd": "argocd" };
// Kinds with no namespace (of those these manifests may use).
const CLUSTER_SCOPED = ["Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"];
// What each kustomization must hold (so that deleting one is noticed too).
const REQUIRED = ["daemonset.yaml", "coordinator/job.yaml", "coordinator/target/rbac.yaml", "coordinator/argocd/rbac.yaml"];
// The coordinator's uid (deploy/kubernetes/coordinator/job.yaml) and what its init container may add.
const COORDINATOR_UID = 65532;
const INIT_CAPABILITIES = ["CHOWN"];
// RBAC the coordinator must never hold: it reads no Secrets, and none of these verbs.
const RBAC_NEVER_VERBS = ["*", "escalate", "bind", "impersonate", "deletecollection"];
const RBAC_NEVER_RESOURCES = ["*", "secrets"];
const CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SYS_ADMIN"];
const IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"];
// Syscalls a replication daemon has no use for and that a container escape would want.
const NEVER = ["mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "bpf", "kexec_load",
  "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "keyctl", "add_key",
  "request_key", "perf_event_open", "process_vm_readv", "process_vm_writev", "open_by_handle_at",
  "fsopen", "fsmount", "move_mount", "open_tree", "userfaultfd", "swapon", "swapoff"];

let failures = 0;
const ok = (file, what) => console.log(`ok  ${file} ${what}`);
const fail = (file, what, why) => {
  failures++;
  console.log(`FAIL ${file} ${what}: ${why}`);
};

// Fields of `doc` that the validator never looked at: the compiled schema reads every property
// it knows (`data.containerPort`, `data.hostIP`, ...), so a key present but never read is one
// the schema lacks. An object of which no key was read is free-form (a map or an opaque
// value): its keys are not judged.
function unknownFields(validateFn, doc) {
  const reads = new Map(); // JSON pointer of an object -> keys read
  const proxies = new WeakMap(); // each object of the (cloned) tree sits at one pointer
  const wrap = (value, ptr) => {
    if (value === null || typeof value !== "object") return value;
    if (!proxies.has(value)) {
      const note = (target, prop) => {
        if (typeof prop !== "string" || Array.isArray(target)) return;
        if (!reads.has(ptr)) reads.set(ptr, new Set());
        reads.get(ptr).add(prop);
      };
      proxies.set(value, new Proxy(value, {
        get(target, prop, receiver) {
          note(target, prop);
          const v = Reflect.get(target, prop, receiver);
          return typeof prop === "string" ? wrap(v, `${ptr}/${prop}`) : v;
        },
        has(target, prop) {
          note(target, prop);
          return Reflect.has(target, prop);
        },
      }));
    }
    return proxies.get(value);
  };
  validateFn.call(wrap(doc, ""));
  const unknown = [];
  const walk = (value, ptr) => {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${ptr}/${i}`));
    const seen = reads.get(ptr);
    for (const k of Object.keys(value)) {
      if (seen && seen.size > 0 && !seen.has(k)) unknown.push(`${ptr}/${k}`);
      else walk(value[k], `${ptr}/${k}`);
    }
  };
  walk(doc, "");
  return unknown;
}

function validateObject(file, doc, namespace) {
  const name = `${doc.metadata?.namespace ? doc.metadata.namespace + "/" : ""}${doc.metadata?.name ?? "?"}`;
  const what = `${doc.kind ?? "?"} ${name}`;
  const Model = modelFor(doc.apiVersion, doc.kind);
  if (!Model) return fail(file, what, `apiVersion ${doc.apiVersion} kind ${doc.kind}: not a Kubernetes kind (kubernetes-models has no such class)`);
  try {
    new Model(doc).validate();
  } catch (e) {
    return fail(file, what, e.message);
  }
  const unknown = unknownFields(Model.prototype.validate, structuredClone(doc));
  if (unknown.length > 0) return fail(file, what, `unknown field(s) ${unknown.join(", ")}`);
  if (CLUSTER_SCOPED.includes(doc.kind)) {
    if (doc.metadata?.namespace !== undefined) return fail(file, what, `a ${doc.kind} has no namespace`);
  } else if (doc.metadata?.namespace !== namespace) {
    return fail(file, what, `metadata.namespace must be ${namespace}`);
  }
  const extra =
    doc.kind === "DaemonSet" ? checkDaemonSet(doc)
    : doc.kind === "Job" ? checkJob(doc)
    : doc.kind === "ClusterRole" || doc.kind === "Role" ? checkRole(doc)
    : [];
  if (extra.length > 0) return fail(file, what, extra.join("; "));
  ok(file, what);
}

// What ferry itself needs of its DaemonSet, beyond what the schema can say.
function checkDaemonSet(ds) {
  const problems = [];
  const pod = ds.spec?.template?.spec ?? {};
  const c = pod.containers?.find((x) => x.name === "ferry") ?? pod.containers?.[0];
  if (!c) return ["no container"];
  const sc = c.securityContext ?? {};
  const add = sc.capabilities?.add ?? [];
  if (JSON.stringify([...add].sort()) !== JSON.stringify([...CAPABILITIES].sort())) {
    problems.push(`capabilities.add is [${add.join(", ")}], must be exactly [${CAPABILITIES.join(", ")}]`);
  }
  if (JSON.stringify(sc.capabilities?.drop) !== JSON.stringify(["ALL"])) problems.push("capabilities.drop must be [ALL]");
  if (sc.allowPrivilegeEscalation !== false) problems.push("allowPrivilegeEscalation must be false");
  if (sc.readOnlyRootFilesystem !== true) problems.push("readOnlyRootFilesystem must be true");
  if (sc.privileged) problems.push("must not be privileged");
  problems.push(...checkSecretModes(pod));
  if (pod.securityContext?.fsGroup !== undefined) problems.push("fsGroup would make the PSK file group-readable");
  const pods = (c.volumeMounts ?? []).find((m) => m.mountPath === "/var/lib/kubelet/pods");
  if (!pods) problems.push("no volumeMount at /var/lib/kubelet/pods");
  else if (pods.mountPropagation !== "HostToContainer") problems.push("/var/lib/kubelet/pods needs mountPropagation: HostToContainer");
  return problems;
}

// ferry refuses a key file that group or others can read (mode & 077): every Secret volume of
// a pod is mounted 0400 or 0600.
function checkSecretModes(pod) {
  const problems = [];
  for (const v of pod.volumes ?? []) {
    if (!v.secret) continue;
    const mode = v.secret.defaultMode ?? 0o644;
    if ((mode & 0o077) !== 0) {
      problems.push(
        `secret volume ${v.name}: defaultMode ${mode} (octal ${mode.toString(8)}) lets group or others read it; ` +
          "use 256 (0400) or 384 (0600), in decimal: YAML 1.1 (Kubernetes) reads 0400 as octal, YAML 1.2 as 400",
      );
    }
  }
  return problems;
}

// The hardening every container of the coordinator's pod keeps.
function checkLockedDown(c, addAllowed) {
  const problems = [];
  const sc = c.securityContext ?? {};
  const add = sc.capabilities?.add ?? [];
  const extra = add.filter((a) => !addAllowed.includes(a));
  if (extra.length > 0) problems.push(`container ${c.name}: capabilities.add [${extra.join(", ")}] not allowed`);
  if (JSON.stringify(sc.capabilities?.drop) !== JSON.stringify(["ALL"])) problems.push(`container ${c.name}: capabilities.drop must be [ALL]`);
  if (sc.allowPrivilegeEscalation !== false) problems.push(`container ${c.name}: allowPrivilegeEscalation must be false`);
  if (sc.readOnlyRootFilesystem !== true) problems.push(`container ${c.name}: readOnlyRootFilesystem must be true`);
  if (sc.privileged) problems.push(`container ${c.name}: must not be privileged`);
  return problems;
}

// What the coordinator's Job needs beyond the schema: one pod at a time (the journal is locked
// per plan), the journal on a PVC at --state-dir, a non-root coordinator, the API token.
function checkJob(job) {
  const problems = [];
  if (job.spec?.parallelism !== 1) problems.push("parallelism must be 1 (one coordinator per plan: the journal is locked)");
  if (job.spec?.completions !== 1) problems.push("completions must be 1");
  if (!(job.spec?.activeDeadlineSeconds > 0)) problems.push("activeDeadlineSeconds must be set");
  const pod = job.spec?.template?.spec ?? {};
  if (pod.automountServiceAccountToken !== true) problems.push("automountServiceAccountToken must be true (it calls the API)");
  if (pod.serviceAccountName !== "ferry-coordinator") problems.push("serviceAccountName must be ferry-coordinator");
  if (pod.securityContext?.fsGroup !== undefined) problems.push("fsGroup would make the PSK file group-readable");
  if (pod.securityContext?.seccompProfile?.type !== "RuntimeDefault") problems.push("pod seccompProfile must be RuntimeDefault");
  problems.push(...checkSecretModes(pod));
  const c = pod.containers?.find((x) => x.name === "ferry");
  if (!c) return [...problems, "no container named ferry"];
  problems.push(...checkLockedDown(c, []));
  for (const i of pod.initContainers ?? []) problems.push(...checkLockedDown(i, INIT_CAPABILITIES));
  const sc = c.securityContext ?? {};
  if (sc.runAsNonRoot !== true || sc.runAsUser !== COORDINATOR_UID) {
    problems.push(`container ferry: must run as uid ${COORDINATOR_UID} with runAsNonRoot`);
  }
  const args = c.args ?? [];
  if (args[0] !== "migrate") problems.push("container ferry: args must start with migrate");
  const stateDir = args[args.indexOf("--state-dir") + 1];
  if (!args.includes("--state-dir") || !stateDir) problems.push("container ferry: no --state-dir");
  else {
    const m = (c.volumeMounts ?? []).find((x) => x.mountPath === stateDir);
    const v = m && (pod.volumes ?? []).find((x) => x.name === m.name);
    if (!v?.persistentVolumeClaim) problems.push(`the state dir ${stateDir} must be a mounted PersistentVolumeClaim (the journal)`);
  }
  return problems;
}

// Least privilege, as far as a file can tell: no wildcards, no Secrets, no verbs that grant more.
function checkRole(role) {
  const problems = [];
  for (const [i, r] of (role.rules ?? []).entries()) {
    const verbs = (r.verbs ?? []).filter((v) => RBAC_NEVER_VERBS.includes(v));
    const resources = (r.resources ?? []).filter((x) => RBAC_NEVER_RESOURCES.includes(x));
    if (verbs.length > 0) problems.push(`rules[${i}]: verbs [${verbs.join(", ")}] not allowed`);
    if (resources.length > 0) problems.push(`rules[${i}]: resources [${resources.join(", ")}] not allowed`);
    if ((r.apiGroups ?? []).includes("*")) problems.push(`rules[${i}]: apiGroups * not allowed`);
    if (r.nonResourceURLs) problems.push(`rules[${i}]: nonResourceURLs not needed`);
  }
  return problems;
}

function checkSeccomp(file) {
  const what = "seccomp profile";
  let p;
  try {
    p = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  } catch (e) {
    return fail(file, what, e.message);
  }
  const problems = [];
  if (p.defaultAction !== "SCMP_ACT_ERRNO") problems.push("defaultAction must be SCMP_ACT_ERRNO");
  if (!Array.isArray(p.syscalls)) problems.push("no syscalls list");
  // OCI format, read by containerd, CRI-O and Docker alike ("archMap" is Docker's and CRI-O's
  // only, and both refuse a profile with both).
  if (p.archMap !== undefined) problems.push("use architectures, not archMap");
  for (const arch of ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]) {
    if (!p.architectures?.includes(arch)) problems.push(`architectures lacks ${arch}`);
  }
  const allowed = new Set();
  const seen = new Set();
  for (const rule of p.syscalls ?? []) {
    if (!Array.isArray(rule.names) || typeof rule.action !== "string") {
      problems.push("each syscalls rule needs names (a list) and action");
      continue;
    }
    for (const n of rule.names) {
      if (seen.has(n)) problems.push(`${n} listed twice`);
      seen.add(n);
      if (rule.action === "SCMP_ACT_ALLOW" && !(rule.args?.length > 0)) allowed.add(n);
    }
  }
  const missing = IO_URING.filter((n) => !allowed.has(n));
  if (missing.length > 0) problems.push(`does not allow ${missing.join(", ")}`);
  const bad = NEVER.filter((n) => allowed.has(n));
  if (bad.length > 0) problems.push(`allows ${bad.join(", ")}`);
  if (problems.length > 0) return fail(file, what, problems.join("; "));
  ok(file, `${what} (${allowed.size} syscalls allowed, io_uring included)`);
}

// --- main
// One kustomization: the directory `rel` under DIR ("" for DIR itself).
function checkKustomization(rel) {
  const at = (f) => (rel === "" ? f : `${rel}/${f}`);
  const namespace = NAMESPACE_OF_DIR[rel] ?? NAMESPACE;
  const yamlFiles = fs.readdirSync(path.join(dir, rel)).filter((f) => /\.ya?ml$/.test(f)).sort();
  let kustomization = null;
  for (const file of yamlFiles) {
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(path.join(dir, rel, file), "utf8")).filter((d) => d != null);
    } catch (e) {
      fail(at(file), "YAML", e.message.split("\n")[0]);
      continue;
    }
    if (file === "kustomization.yaml") {
      kustomization = docs[0];
      continue;
    }
    if (docs.length === 0) fail(at(file), "YAML", "no document");
    for (const doc of docs) {
      objects++;
      if (typeof doc !== "object" || Array.isArray(doc)) fail(at(file), "YAML", "a document is not a mapping");
      else validateObject(at(file), doc, namespace);
    }
  }

  // kustomization.yaml is kustomize's, not a Kubernetes object: check what it lists.
  const k = at("kustomization.yaml");
  if (!kustomization) return fail(k, "Kustomization", "missing");
  const listed = [...(kustomization.resources ?? [])].sort();
  const others = yamlFiles.filter((f) => f !== "kustomization.yaml");
  const notListed = others.filter((f) => !listed.includes(f));
  const notThere = listed.filter((f) => !others.includes(f));
  if (kustomization.kind !== "Kustomization") fail(k, "Kustomization", "kind is not Kustomization");
  else if (notListed.length > 0 || notThere.length > 0 || new Set(listed).size !== listed.length) {
    fail(k, "Kustomization",
      `resources must list exactly the other yaml files: missing [${notListed.join(", ")}], ` +
        `not here [${notThere.join(", ")}]`);
  } else ok(k, `Kustomization (resources: ${listed.length} files, schema check skipped)`);
}

// DIR, then every directory below it that holds a kustomization.yaml.
const roots = [""];
const walkDirs = (rel) => {
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory()) continue;
    const sub = rel === "" ? e.name : `${rel}/${e.name}`;
    if (fs.existsSync(path.join(dir, sub, "kustomization.yaml"))) roots.push(sub);
    walkDirs(sub);
  }
};
walkDirs("");
let objects = 0;
for (const rel of roots) checkKustomization(rel);

if (fs.existsSync(path.join(dir, "seccomp"))) {
  for (const f of fs.readdirSync(path.join(dir, "seccomp")).filter((f) => f.endsWith(".json")).sort()) {
    checkSeccomp(`seccomp/${f}`);
  }
}
if (!fs.existsSync(path.join(dir, "seccomp/ferry.json"))) fail("seccomp/ferry.json", "seccomp profile", "missing");
for (const f of REQUIRED) if (!fs.existsSync(path.join(dir, f))) fail(f, "file", "missing");

console.log(failures === 0 ? `${objects} objects valid` : `${failures} problem(s)`);
process.exit(failures === 0 ? 0 : 1);
