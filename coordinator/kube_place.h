// A plan that names PVCs (`source: {kubernetes: ...}`, README "Migrations"), made into pairs of
// daemon volumes, and the holder pods that keep every PVC mounted while ferry works on it.
//
// Resolution, read-only and checked whole before anything runs (`ferry migrate --dry-run` prints
// it): PVC -> its bound PV -> the node that mounts it (the pods using the PVC; for a PV with node
// affinity and no pod, the affinity) -> the ferry DaemonSet pod on that node (namespace and label
// selector from the plan, deploy/kubernetes/ by default) -> its address. The target side: the PVC
// as mapped (namespace, name, storage class, access modes, size, volumeMode), to be created when
// missing. Every failure names the plan line, the object and what to do.
//
// Holder pods: kubelet mounts a volume only for a pod, and a ferry daemon finds a PV only where
// kubelet mounted it (daemon/volumes.h). So while a coordinator works on a plan, every PVC of it
// is held by a pod of ferry's own (Velero's restore-helper pattern: a pause image, the PVC
// mounted, read-only on the source, non-root, no privileges, tiny resources): a source holder on
// the node that mounts the PVC, so that the volume stays mounted after quiesce_source stops the
// app; a target holder on the plan's target_node or the scheduler's choice (the first consumer
// of a WaitForFirstConsumer class). Pinned holders use a kubernetes.io/hostname nodeSelector,
// never spec.nodeName (which skips the scheduler, and with it the binding of a delayed PVC).
// They are labelled app.kubernetes.io/managed-by=ferry, ferry.io/plan=NAME, ferry.io/holder=SIDE.
// Lifetime: created (or found again) when a command starts, the target's deleted before every
// start_target (the app's pods must mount RWO volumes) and made again on the same nodes after a
// rehearsal's stop_target, and all deleted when the command ends — so a coordinator killed
// anywhere leaves none behind after its next run.
// Threading: blocking, on the coordinator's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/io/tls.h"
#include "base/result.h"
#include "coordinator/console.h"
#include "coordinator/plan.h"

namespace ferry {

// One PVC of a pair as found.
struct KubeEnd {
  std::string namespace_, pvc;
  bool exists = false;  // the target: false until created
  std::string phase;    // Bound, Pending ("" when it does not exist)
  std::string pv;       // the bound PV ("" while pending)
  std::string storage_class, volume_mode = "Filesystem";
  std::vector<std::string> access_modes;
  uint64_t capacity = 0;  // status.capacity, else the request
  std::string node;       // where it is mounted or will be ("" = the scheduler's choice)
  std::string node_from;  // "pod shop/db-0", "PV node affinity", "holder pod", "target_node", "scheduler"
  std::string ferry_pod;  // NAMESPACE/NAME of the ferry daemon pod on `node`
  std::string daemon;     // ferry://HOST:PORT ("" until a node is known)
};

struct KubeResolution {
  KubePair pair;
  KubeEnd source, target;
  uint64_t source_used_bytes = 0;  // what the source volume holds (its daemon's statfs)
};

// Reads both clusters and checks every pair; creates nothing. `tls`: for asking the source
// daemons what their volumes hold (the size check).
Result<std::vector<KubeResolution>> ResolvePvcs(const Plan& plan, const io::TlsContext* tls,
                                                bool target_may_be_in_use = false);

// The resolution as the dry run prints it: one row per PVC of each pair.
std::string ResolutionTable(const std::vector<KubeResolution>& rows);

// Makes a plan that names PVCs runnable: resolves, creates the missing target PVCs (labelled
// with the plan), starts the holder pods and waits until they run on nodes whose ferry pod is
// ready, then fills plan->pairs (pv:NAME volumes on those daemons).
struct PlaceOptions {
  // A rehearsed app that a killed coordinator left running on the target (the command stops it
  // before it stages): its pods' use of the target PVCs is not refused.
  bool target_may_be_in_use = false;
};
Status PlacePvcs(Plan* plan, const io::TlsContext* tls, const PlaceOptions& options, Console& console);

enum class HolderSide { kSource, kTarget, kBoth };

// Deletes the plan's holder pods of `side` in both clusters and waits until they are gone.
Status ReleaseHolders(const Plan& plan, HolderSide side, Console& console);

// The target holder pods again, on the nodes the pairs' targets were held on (after a
// rehearsal's stop_target: the stage that restores the target needs its volumes mounted).
Status HoldTargetsAgain(const Plan& plan, Console& console);

}  // namespace ferry
