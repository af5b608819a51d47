#include "agent/sync_types.h"

namespace ferry {

uint32_t SyncOptions::WireFlags() const {
  uint32_t flags = 0;
  if (dry_run) flags |= protocol::kOptDryRun;
  if (checksum) flags |= protocol::kOptChecksum;
  if (no_selinux) flags |= protocol::kOptNoSelinux;
  if (no_xattrs) flags |= protocol::kOptNoXattrs;
  if (itemize) flags |= protocol::kOptItemize;
  if (allow_empty_source) flags |= protocol::kOptAllowEmptySource;
  if (block) flags |= protocol::kOptBlock;
  if (partial) flags |= protocol::kOptPartial;
  return flags;
}

SyncOptions SyncOptions::FromOpen(const protocol::Open& open) {
  SyncOptions o;
  o.dry_run = (open.options & protocol::kOptDryRun) != 0;
  o.checksum = (open.options & protocol::kOptChecksum) != 0;
  o.no_selinux = (open.options & protocol::kOptNoSelinux) != 0;
  o.no_xattrs = (open.options & protocol::kOptNoXattrs) != 0;
  o.itemize = (open.options & protocol::kOptItemize) != 0;
  o.allow_empty_source = (open.options & protocol::kOptAllowEmptySource) != 0;
  o.block = (open.options & protocol::kOptBlock) != 0;
  o.partial = (open.options & protocol::kOptPartial) != 0;
  o.excludes = open.excludes;
  return o;
}

}  // namespace ferry
