#include "daemon/tracking.h"

#include <chrono>

#include "agent/path.h"
#include "base/log.h"

namespace ferry {

namespace {
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string WalkPlan::Describe() const {
  if (partial) return "tracked (" + std::to_string(names) + " changed names)";
  return "full walk: " + full_walk_reason;
}

void Tracking::AddChanges(Volume& volume, ChangeTracker::Changes changes) {
  for (auto& [key, target] : volume.targets) {
    if (!target.gap.empty()) continue;
    if (!changes.complete) {
      target.gap = changes.gap;
      target.pending.clear();
      target.names = 0;
      continue;
    }
    for (const auto& [dir, names] : changes.dirs) {
      for (const std::string& name : names) AddName(target, dir, name);
    }
  }
}

void Tracking::AddName(Target& target, const std::string& dir, const std::string& name) {
  if (!target.gap.empty()) return;
  target.names += target.pending[dir].insert(name).second ? 1 : 0;
  if (target.names > options_.names_max) {
    target.gap = "more than " + std::to_string(options_.names_max) + " changed names since the last stage";
    target.pending.clear();
    target.names = 0;
  }
}

WalkPlan Tracking::Begin(const std::string& root, const std::string& target_key, bool dry_run,
                         const std::string& forced) {
  WalkPlan plan;
  if (!options_.enabled) {
    plan.full_walk_reason = "change tracking is off (ferry daemon --no-track)";
    return plan;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t now = NowMs();
  std::string ended;
  for (auto it = volumes_.begin(); it != volumes_.end();) {
    if (it->second.tracker && now - it->second.used_ms > options_.idle_ms) {
      LOG_INFO("stopped watching '" + it->first + "': no stage for " + std::to_string(options_.idle_ms / 60000) +
               " min");
      if (it->first == root) ended = "the watch ended after " + std::to_string(options_.idle_ms / 60000) +
                                     " min without stages";
      it = volumes_.erase(it);
    } else {
      ++it;
    }
  }
  Volume& volume = volumes_[root];
  volume.used_ms = now;
  if (!volume.tracker) {
    ChangeTracker::Options watch;
    watch.max_names = options_.names_max;
    watch.reader_thread = !options_.queue_only;
    Result<std::unique_ptr<ChangeTracker>> tracker = ChangeTracker::Watch(root, watch);
    if (!tracker.ok()) {
      if (volume.watch_error.empty()) {
        LOG_WARN("stages of '" + root + "' walk the whole tree: cannot track its changes: " +
                 tracker.status().ToString());
      }
      volume.watch_error = tracker.status().ToString();
      plan.full_walk_reason = "cannot track changes: " + volume.watch_error;
      return plan;
    }
    volume.tracker = std::move(*tracker);
    volume.watch_error.clear();
    LOG_INFO("watching '" + root + "' for changes between stages");
  } else {
    AddChanges(volume, volume.tracker->Take());
  }
  auto [it, first] = volume.targets.try_emplace(target_key);
  Target& target = it->second;
  if (!forced.empty()) {
    plan.full_walk_reason = forced;
  } else if (!ended.empty()) {
    plan.full_walk_reason = ended;
  } else if (first) {
    plan.full_walk_reason = "the first stage to this target the daemon has watched";
  } else if (!target.gap.empty()) {
    plan.full_walk_reason = target.gap;
  } else if (target.base == 0) {
    plan.full_walk_reason = "no stage to this target has committed since the watch began (or the last one failed)";
  } else {
    plan.partial = true;
    plan.base = target.base;
    plan.names = target.names;
    // A dry run changes nothing: what it looks at is still due.
    plan.changed = dry_run ? target.pending : std::move(target.pending);
  }
  if (!dry_run) {
    // From here on every change is kept again: the stage that begins now is the new base.
    target.pending.clear();
    target.names = 0;
    target.gap.clear();
    target.base = 0;  // until it commits
  }
  return plan;
}

void Tracking::End(const std::string& root, const std::string& target_key, bool dry_run,
                   const Result<SyncSummary>& stage) {
  if (dry_run || !options_.enabled) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto volume = volumes_.find(root);
  if (volume == volumes_.end()) return;
  auto it = volume->second.targets.find(target_key);
  if (it == volume->second.targets.end()) return;
  Target& target = it->second;
  target.base = stage.ok() ? stage->base_token : 0;
  if (!stage.ok()) return;
  if (stage->base_token == 0 && (stage->scan_incomplete || stage->files_failed != 0)) {
    target.gap = "the last stage left part of the target undone (" +
                 (stage->scan_incomplete ? std::string("a part of the source it could not read")
                                         : std::to_string(stage->files_failed) + " files failed") +
                 ")";
  }
  // A file read while it changed: the target has an mtime that differs from the source's, and
  // the write that moved it may have come before this stage began (so the watch says nothing more).
  for (const std::string& path : stage->unsettled) {
    auto [dir, name] = SplitParent(path);
    AddName(target, std::string(dir), std::string(name));
  }
}

LinkNames Tracking::TakeLinks(const std::string& root) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto volume = volumes_.find(root);
  return volume == volumes_.end() ? LinkNames() : std::move(volume->second.links);
}

void Tracking::PutLinks(const std::string& root, LinkNames links) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto volume = volumes_.find(root);
  if (volume != volumes_.end()) volume->second.links = std::move(links);
}

}  // namespace ferry
