#include "daemon/volumes.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/status.h"

namespace ferry {

namespace {

// Entries of a directory, without . and ..; empty when it cannot be read (absent: no pods).
std::vector<std::string> Children(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

bool Exists(const std::string& path, struct stat* st) { return ::stat(path.c_str(), st) == 0; }

}  // namespace

Result<std::string> FindPersistentVolume(const std::string& kubelet_root, const std::string& pv) {
  if (pv.empty() || pv == "." || pv == ".." || pv.find('/') != std::string::npos) {
    return Status::InvalidArgument(std::string("'").append(kPvPrefix) + pv + "' is not a persistent volume name");
  }
  const std::string pods = kubelet_root + "/pods";
  struct stat st;
  if (!Exists(pods, &st) || !S_ISDIR(st.st_mode)) {
    return Status::NotFound("volume '" + std::string(kPvPrefix) + pv + "': no kubelet pods directory at " + pods +
                            " (set --kubelet-root to kubelet's --root-dir, mounted into the daemon)");
  }
  struct Match {
    std::string pod, path;
  };
  std::vector<Match> matches;
  for (const std::string& pod : Children(pods)) {
    const std::string volumes = pods + "/" + pod + "/volumes";
    for (const std::string& plugin : Children(volumes)) {
      const std::string dir = volumes + "/" + plugin + "/" + pv;
      if (!Exists(dir, &st) || !S_ISDIR(st.st_mode)) continue;
      // CSI publishes the file system at <pv>/mount (beside vol_data.json); other plugins at <pv>.
      const std::string mount = dir + "/mount";
      bool csi = plugin == "kubernetes.io~csi";
      if (csi && !(Exists(mount, &st) && S_ISDIR(st.st_mode))) continue;  // not published (yet)
      matches.push_back({pod, csi ? mount : dir});
    }
    const std::string devices = pods + "/" + pod + "/volumeDevices";
    for (const std::string& plugin : Children(devices)) {
      const std::string dev = devices + "/" + plugin + "/" + pv;
      if (Exists(dev, &st) && (S_ISBLK(st.st_mode) || S_ISREG(st.st_mode))) matches.push_back({pod, dev});
    }
  }
  if (matches.empty()) {
    return Status::NotFound("volume '" + std::string(kPvPrefix) + pv + "': no pod on this node mounts PV '" + pv +
                            "' (looked in " + pods + "/*/volumes/*/" + pv + " and volumeDevices/): run the stage "
                            "on the node where its pod runs");
  }
  // Several pods of this node mount the PV (the app and ferry's holder pod, coordinator/kube_place.h):
  // one volume when every mount is the same file system object; the first writable one is used.
  // Compared by the file system's id and the inode: a file share mounted once per pod (NFS,
  // CephFS; a read-only mount beside a writable one) has another st_dev for the same volume.
  auto same_object = [&] {
    struct stat first, other;
    struct statfs first_fs, other_fs;
    if (::stat(matches[0].path.c_str(), &first) != 0 || ::statfs(matches[0].path.c_str(), &first_fs) != 0) return false;
    for (const Match& m : matches) {
      if (::stat(m.path.c_str(), &other) != 0 || ::statfs(m.path.c_str(), &other_fs) != 0 ||
          std::memcmp(&other_fs.f_fsid, &first_fs.f_fsid, sizeof(first_fs.f_fsid)) != 0 ||
          other.st_ino != first.st_ino || other.st_rdev != first.st_rdev)
        return false;
    }
    return true;
  };
  if (matches.size() > 1 && same_object()) {
    for (const Match& m : matches) {
      if (::access(m.path.c_str(), W_OK) == 0) return m.path;
    }
    return matches[0].path;
  }
  if (matches.size() > 1) {
    std::string list;
    for (const Match& m : matches) list += (list.empty() ? "" : ", ") + m.path;
    return Status::InvalidArgument("volume '" + std::string(kPvPrefix) + pv + "' is mounted " +
                                   std::to_string(matches.size()) + " times on this node (" + list +
                                   "): name the one to use with --volume NAME=PATH");
  }
  return matches[0].path;
}

std::map<std::string, std::string> ListPersistentVolumes(const std::string& kubelet_root) {
  std::map<std::string, std::string> out;
  if (kubelet_root.empty()) return out;
  const std::string pods = kubelet_root + "/pods";
  std::map<std::string, int> names;
  for (const std::string& pod : Children(pods)) {
    for (const char* kind : {"/volumes", "/volumeDevices"}) {
      const std::string dir = pods + "/" + pod + kind;
      for (const std::string& plugin : Children(dir)) {
        for (const std::string& pv : Children(dir + "/" + plugin)) names[pv] += 1;
      }
    }
  }
  for (const auto& [pv, count] : names) {
    Result<std::string> path = FindPersistentVolume(kubelet_root, pv);
    if (path.ok()) out.emplace(pv, *path);
  }
  return out;
}

Result<std::string> VolumeTable::Resolve(const std::string& name) const {
  if (auto it = paths.find(name); it != paths.end()) return it->second;
  if (name.rfind(kPvPrefix, 0) == 0 && !kubelet_root.empty()) {
    return FindPersistentVolume(kubelet_root, name.substr(std::string(kPvPrefix).size()));
  }
  std::string known;
  for (const auto& [n, path] : paths) known += (known.empty() ? "" : ", ") + n;
  if (!kubelet_root.empty()) known += std::string(known.empty() ? "" : ", ") + "pv:NAME";
  return Status::NotFound("unknown volume '" + name + "' (this daemon serves: " + known + ")");
}

}  // namespace ferry
