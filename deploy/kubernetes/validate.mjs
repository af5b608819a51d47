// Checks the manifests in this directory against the Kubernetes API schemas, without a cluster.
// Run it through ./validate, which installs its npm packages and points NODE_PATH at them:
//
//   node validate.mjs [DIR]      (DIR: the manifests, default: this file's directory)
//
// Every document of every *.yaml in DIR (kustomization.yaml aside) must be a known
// apiVersion/kind; it is checked with kubernetes-models' validate() (types, required fields,
// enums, formats) and, as `kubectl apply` does by default (strict field validation), for fields
// that the schema does not know (a misspelt field name). kustomization.yaml must list exactly
// the other *.yaml files. Then the ferry-specific checks: the seccomp profile, the DaemonSet's
// capabilities, the PSK file's mode. One line per object; exit status 1 on any failure.
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

function validateObject(file, doc) {
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
  if (doc.kind !== "Namespace" && doc.metadata?.namespace !== NAMESPACE) {
    return fail(file, what, `metadata.namespace must be ${NAMESPACE}`);
  }
  const extra = doc.kind === "DaemonSet" ? checkDaemonSet(doc) : [];
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
  // The daemon refuses a key file that group or others can read (mode & 077).
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
  if (pod.securityContext?.fsGroup !== undefined) problems.push("fsGroup would make the PSK file group-readable");
  const pods = (c.volumeMounts ?? []).find((m) => m.mountPath === "/var/lib/kubelet/pods");
  if (!pods) problems.push("no volumeMount at /var/lib/kubelet/pods");
  else if (pods.mountPropagation !== "HostToContainer") problems.push("/var/lib/kubelet/pods needs mountPropagation: HostToContainer");
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
const yamlFiles = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
let kustomization = null;
let objects = 0;
for (const file of yamlFiles) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(path.join(dir, file), "utf8")).filter((d) => d != null);
  } catch (e) {
    fail(file, "YAML", e.message.split("\n")[0]);
    continue;
  }
  if (file === "kustomization.yaml") {
    kustomization = docs[0];
    continue;
  }
  if (docs.length === 0) fail(file, "YAML", "no document");
  for (const doc of docs) {
    objects++;
    if (typeof doc !== "object" || Array.isArray(doc)) fail(file, "YAML", "a document is not a mapping");
    else validateObject(file, doc);
  }
}

// kustomization.yaml is kustomize's, not a Kubernetes object: check what it lists.
if (!kustomization) {
  fail("kustomization.yaml", "Kustomization", "missing");
} else {
  const listed = [...(kustomization.resources ?? [])].sort();
  const others = yamlFiles.filter((f) => f !== "kustomization.yaml");
  const notListed = others.filter((f) => !listed.includes(f));
  const notThere = listed.filter((f) => !others.includes(f));
  if (kustomization.kind !== "Kustomization") fail("kustomization.yaml", "Kustomization", "kind is not Kustomization");
  else if (notListed.length > 0 || notThere.length > 0 || new Set(listed).size !== listed.length) {
    fail("kustomization.yaml", "Kustomization",
      `resources must list exactly the other yaml files: missing [${notListed.join(", ")}], ` +
        `not here [${notThere.join(", ")}]`);
  } else ok("kustomization.yaml", `Kustomization (resources: ${listed.length} files, schema check skipped)`);
}

if (fs.existsSync(path.join(dir, "seccomp"))) {
  for (const f of fs.readdirSync(path.join(dir, "seccomp")).filter((f) => f.endsWith(".json")).sort()) {
    checkSeccomp(`seccomp/${f}`);
  }
}
if (!fs.existsSync(path.join(dir, "seccomp/ferry.json"))) fail("seccomp/ferry.json", "seccomp profile", "missing");
if (!yamlFiles.includes("daemonset.yaml")) fail("daemonset.yaml", "DaemonSet", "missing");

console.log(failures === 0 ? `${objects} objects valid` : `${failures} problem(s)`);
process.exit(failures === 0 ? 0 : 1);
