// The volumes a daemon serves: named directories or block devices given with --volume, and
// Kubernetes persistent volumes named pv:NAME, found where kubelet mounts them on this node.
// Threading: a VolumeTable is read-only once the daemon runs; Resolve is thread-safe.
#pragma once

#include <map>
#include <string>

#include "base/result.h"

namespace ferry {

struct VolumeTable {
  std::map<std::string, std::string> paths;  // volume name -> root directory (or device, image)
  std::string state_dir;     // the receiver's state cache lives here ("": none)
  std::string kubelet_root;  // where pv:NAME volumes are looked for ("": not on a node)

  // The root of volume `name`: one given with --volume, else for pv:NAME the one mount of PV
  // NAME under kubelet_root. Errors name the volume and say what to do.
  Result<std::string> Resolve(const std::string& name) const;
};

// Where kubelet mounts persistent volume `pv` for the pods of this node, under `kubelet_root`:
//   pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount   (CSI drivers)
//   pods/<pod uid>/volumes/<plugin>/<pv>                  (in-tree plugins: local, nfs, ...)
//   pods/<pod uid>/volumeDevices/<plugin>/<pv>            (volumeMode: Block)
// One match (several pods mounting the same file system object count as one: the first writable
// mount), or an error: none (no pod here uses it), or several different ones (naming them).
Result<std::string> FindPersistentVolume(const std::string& kubelet_root, const std::string& pv);

// The persistent volumes found on this node as FindPersistentVolume finds them (pv name -> path), for listing.
std::map<std::string, std::string> ListPersistentVolumes(const std::string& kubelet_root);

// The prefix of a volume name that asks for discovery.
inline constexpr const char* kPvPrefix = "pv:";

}  // namespace ferry
