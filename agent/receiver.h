// Receiver: the target end of a stage, as a state machine driven by the sender's frames.
//   ENTRIES      -> compare each entry with the target; create directories, symlinks and special
//                   files; fix metadata; answer NEED for files whose content must come, ITEMS
//                   for what changes (dry run, --itemize)
//   ENTRIES_END  -> NEED_END: no more needs
//                   (with HASHES of the target's copy, the basis, when a delta may pay)
//   WANT         -> HASHES: the children of the tree nodes the sender found different
//   PATCH        -> a file with a basis: patch it in place (large file, small delta; marked
//                   dirty in the state cache until durable) or rebuild it in a temp file
//   DATA/HOLE/FILE_END -> write at the offsets given, verify the hash tree's root, set the
//                   metadata, hand a temp file to the Committer (durable, then renamed). A file
//                   sent whole (no basis, or PATCH kWhole) may come over any data stream (lane),
//                   its blocks in any order: DATA and HOLE cover it exactly, block by block, and
//                   whichever thread completes it after its FILE_END finishes it.
//   DONE         -> flush commits, hard links, delete what the source no longer has, directory
//                   metadata bottom-up, syncfs, then COMMIT with the figures
// Every path from the wire is validated and resolved beneath the volume root without following
// symlinks (agent/fs.h) before any syscall uses it.
// Threading: Run() on one thread, which reads the session channel; one more thread per lane
// (SetLanes) writes whole files; the Committer flushes on its own.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <tsl/robin_map.h>

#include "agent/blocks.h"
#include "agent/channel.h"
#include "agent/committer.h"
#include "agent/entry_store.h"
#include "agent/fs.h"
#include "agent/hash.h"
#include "agent/io/engine.h"
#include "agent/metadata.h"
#include "agent/path.h"
#include "agent/prefetch.h"
#include "agent/rsync_delta.h"
#include "agent/state_cache.h"
#include "agent/xattr_cache.h"
#include "agent/sync_types.h"

namespace ferry {

class Receiver {
 public:
  // REQUIRES: the session is open; `root_fd` is the target root directory and outlives Run(),
  // or -1 for a dry run into a target that does not exist yet (everything is then new). With
  // options.block, `root_fd` is the target block device or image file, open for writing.
  // `progress` (may be null) counts what arrives, for a pulling client's progress display.
  Receiver(Channel& channel, int root_fd, std::string root_display, SyncOptions options,
           uint64_t session_id, SyncProgress* progress = nullptr);
  ~Receiver();

  // Runs the stage to its COMMIT. On failure the peer is told why and the target keeps every
  // file it had (changed files are committed one by one; nothing half-written is exposed).
  Status Run();
  // Block hashes of files ferry wrote come from `cache` (may be null; outlives Run()) while the
  // files are untouched, and are recorded in it at the end of the stage.
  void SetStateCache(StateCache* cache) { cache_ = cache; }
  // Keeps what the stage reads of the target's xattrs in `state_dir` (an XattrCache), and
  // takes what earlier stages kept there: an inode whose ctime did not move is not listed
  // again. Saved at the end of Run(). REQUIRES: called before Run(); nothing for "".
  void UseXattrCache(const std::string& state_dir);
  // Also hands each itemised change to `sink` (a pulling client prints them).
  void SetItemSink(ItemSink sink) { item_sink_ = std::move(sink); }
  // Data streams besides the session channel (OPEN_OK granted them), each read on its own thread:
  // DATA and HOLE of files sent whole. REQUIRES: called before Run(); the channels outlive it.
  void SetLanes(std::vector<Channel*> lanes) { lanes_ = std::move(lanes); }
  // After Run(): the stage's figures as the receiver saw them.
  SyncSummary Summary() const;

 private:
  // The target's version of a needed file, offered to the sender as HASHES.
  struct Basis {
    uint32_t block_size = 0;
    uint64_t size = 0;
    HashTree tree;
    FileKey key;
    nlink_t links = 1;
    std::string partial_temp;  // a partial file of an interrupted stage, resumed in place
    bool device = false;       // a block device (block volumes)
  };
  // A file patched against a basis (one at a time, on the session channel).
  struct OpenFile {
    uint32_t id = 0;
    UniqueFd fd;
    std::string parent;
    std::string temp_name;  // empty when patched in place
    uint64_t next_offset = 0;
    uint64_t bytes_written = 0;
    // PatchKind::kBlocks: the basis's leaves, replaced block by block as DATA and HOLE arrive.
    bool patch = false;
    uint32_t block_size = 0;
    std::vector<Hash128> leaves;
    uint64_t checkpoint = 0;  // bytes made durable and remembered as a partial file
    // Shifted content (PatchKind::kRsync): librsync patches the basis into the temp file.
    UniqueFd basis_fd;
    std::unique_ptr<rsync_delta::Patcher> patcher;
  };
  // What a thread that writes whole files keeps: the last directory it wrote into, its engine.
  struct DirSlot {
    std::string parent;
    UniqueFd fd;
    std::unique_ptr<io::Engine> engine;  // made at its first write
  };
  // A file sent whole: DATA and HOLE cover [0, size) exactly, block-aligned, in any order, over
  // any stream. Created at its NEED (or PATCH kWhole) on the main thread; finished by the thread
  // that completes it once its FILE_END has come.
  // Thousands can wait at once for their FILE_END (which trails behind the manifest on the
  // session's connection): it keeps what its data needs, not a copy of its entry (FinishIncoming
  // takes that), its name and temp name made when used (20 % of a full stage's peak at 100,000
  // small files went to these, massif).
  // What a file sent whole keeps of its FILE_END until its data is in.
  struct Ended {
    Hash128 content_hash{};
    protocol::FileOutcome outcome = protocol::FileOutcome::kComplete;
  };
  struct Incoming {
    uint32_t id = 0;
    uint64_t size = 0;      // the entry's
    std::string_view path;  // the entry's, in entries_ (which never moves it)
    uint32_t block_size = 0;
    std::string_view parent() const { return SplitParent(path).first; }
    // Nothing at the final name and too small to checkpoint: the temp file may be unnamed.
    bool may_be_unnamed = false;
    std::mutex mutex;  // guards what follows
    UniqueFd fd;       // the temp file, created at the first DATA
    bool unnamed = false;  // fd is an O_TMPFILE, linked at its final name by the committer
    // A named temp file with all its data, closed until its FILE_END comes (which can trail
    // thousands of files behind on the session's connection): ReopenParked finds it again.
    bool parked = false;
    uint64_t parked_ino = 0;
    UnnamedTicket ticket;  // held while fd is unnamed
    std::vector<Hash128> leaves;  // zero blocks' hashes until their data arrives
    std::map<uint64_t, uint64_t> covered;  // [start, end) runs written, merged
    uint64_t covered_bytes = 0;  // DATA and HOLE
    uint64_t data_bytes = 0;
    uint64_t data_end = 0;  // the temp file's size: it is new (O_EXCL), so the end of its last DATA
    uint64_t checkpoint = 0;  // prefix made durable and remembered as a partial file
    std::optional<Ended> end;
    bool discarded = false;  // the sender gave it up (vanished, unreadable): late data is dropped
  };
  // A file written this stage, recorded in the state cache once durable.
  struct Written {
    uint32_t id = 0;
    uint32_t block_size = 0;
    std::vector<Hash128> leaves;
    timespec mtime{};  // as ferry set it
  };

  // At the end of a stage, once its files are in place: remembers in the xattr cache what each
  // file in xattrs_written_ now has, under its identity as it is now.
  void RememberWrittenXattrs();
  Status Dispatch(const Frame& frame, bool* done);
  Status HandleEntries(const Frame& frame);
  Status HandleEntriesEnd(const Frame& frame);
  // `inspection`: what the inspector saw of the target's entry (null: look now).
  Status HandleEntry(protocol::Entry entry, const Inspection* inspection);
  // Checks where an entry sits and files its path: the id of its parent directory.
  Result<uint32_t> PlaceEntry(const protocol::Entry& entry);
  // `st`: the target's lstat (null: no such entry); `xattrs`: its xattrs if already read;
  // `in_made_dir`: its parent was made by this stage (so no partial file of it can be there).
  Status HandleFileEntry(const protocol::Entry& entry, int dir_fd, const std::string& name,
                         const struct stat* st, const std::vector<protocol::Xattr>* xattrs, bool in_made_dir);
  // A block volume: its one entry is the target device or image file itself, always patched in
  // place against its current content.
  Status HandleBlockEntry(const protocol::Entry& entry);
  Status FinishBlockVolume(const protocol::FileEnd& end, std::vector<Hash128> leaves);
  Status HandleOtherEntry(const protocol::Entry& entry, int dir_fd, const std::string& name,
                          const struct stat* st, const std::vector<protocol::Xattr>* xattrs);
  Status CreateSpecial(const protocol::Entry& entry, int dir_fd, const std::string& name);
  // The basis worth offering for a needed file, if any. `target`: the target's entry of that
  // name, or null when there is none.
  Result<std::optional<Basis>> FindBasis(const protocol::Entry& entry, int dir_fd, const std::string& name,
                                         const struct stat* target);
  Result<std::optional<Basis>> TargetBasis(const protocol::Entry& entry, int fd, const struct stat& st, uint64_t size);
  // `name_free`: the target has nothing at the entry's name (absent, or removed for a new type).
  Status NeedFile(const protocol::Entry& entry, std::optional<Basis> basis, bool name_free = false);
  Status HandleWant(const Frame& frame);
  Status HandlePatch(const Frame& frame);
  // Removes the offered basis of `id` (nullopt when there is none).
  std::optional<Basis> TakeBasis(uint32_t id);
  Status CheckStillBasis(int fd, const Basis& basis, const std::string& path);
  Result<UniqueFd> OpenBasis(int dir_fd, const std::string& name, const Basis& basis, int flags,
                             const std::string& path);
  Status StartPatch(uint32_t id, Basis basis, uint64_t changed_bytes);
  Status StartRsync(uint32_t id, Basis basis);
  Status HandleDeltaPiece(const Frame& frame);
  // The leaves of an rsync-patched temp file, read back (librsync wrote it).
  Result<std::vector<Hash128>> FinishRsync(const protocol::FileEnd& end);
  Status HandleData(const Frame& frame);
  Status HandleHole(const Frame& frame);
  // Whole files (receiver_whole.cc), from the main thread or a lane.
  void StartIncoming(uint32_t id, bool name_free = false);
  // DATA (`bytes`) or HOLE (`hole_length`, bytes empty) of a file sent whole.
  Status HandleWholeRange(uint32_t id, uint64_t offset, std::string_view bytes, uint64_t hole_length, DirSlot* dir);
  // REQUIRES: f.mutex held.
  Status WriteWholeRange(Incoming& f, uint64_t offset, std::string_view bytes, uint64_t length,
                         const std::vector<Hash128>& leaves, DirSlot* dir);
  // The FILE_END of a file sent whole, from the session's connection or (kCapEndOnStream) the
  // data stream of its last range: its counts, then EndIncoming. `dir`: the caller's.
  Status EndWholeFile(const protocol::FileEnd& end, DirSlot* dir);
  // A FILE_END's counts and figures (from the main thread or a lane); `path`: its entry's.
  void CountFileEnd(const protocol::FileEnd& end, std::string_view path);
  // A file not synced, counted in figures_ (the lanes count too).
  void CountFailed() {
    std::lock_guard<std::mutex> lock(finish_mutex_);
    figures_.files_failed += 1;
  }
  Status EndIncoming(const protocol::FileEnd& end, DirSlot* dir);
  // The incoming file `id`, made from its entry at its first touch; null when `id` is not a file
  // being sent whole. REQUIRES: incoming_mutex_ held.
  std::shared_ptr<Incoming> FindIncoming(uint32_t id);
  // REQUIRES: `f` complete and its FILE_END in; no other thread touches it any more.
  Status FinishIncoming(uint32_t id, Incoming& f, DirSlot* dir);
  Status CheckpointIncoming(Incoming& f);  // REQUIRES: f.mutex held
  Result<int> SlotDir(DirSlot* slot, std::string_view parent);
  // The named temp file of entry `id` in its directory (every temp file of the session).
  std::string TempName(uint32_t id) const { return temp_tag_ + std::to_string(id); }
  Status CreateTemp(Incoming& f, DirSlot* dir);
  // REQUIRES: f.mutex held, or no other thread touches f.
  Status ParkIfComplete(Incoming& f);
  // Deletes f's temp file, if it has one (an unnamed one by closing it), and returns its ticket.
  // REQUIRES: f.mutex held, or no other thread touches f.
  void RemoveTemp(Incoming& f, DirSlot* dir);
  Status ReopenParked(Incoming& f, DirSlot* dir);
  void LaneLoop(Channel& lane);
  void LaneFailed(const Status& status);
  // At DONE: waits until every whole file is finished (or a lane failed).
  Status AwaitIncoming();
  // After a failure, lanes stopped: removes temp files, keeps checkpointed partial files.
  void DiscardIncoming();
  void StopLanes();
  // Checks that a patch write [offset, offset + length) of the open file is block-aligned.
  Status CheckPatchRange(uint64_t offset, uint64_t length, const char* what);
  Status RecordWritten();
  // A partial file of an earlier, interrupted stage for `entry`, as a basis (or nullopt).
  std::optional<Basis> FindPartial(const protocol::Entry& entry, int dir_fd);
  Status HandleFileEnd(const Frame& frame);
  Status FinishFile(const protocol::FileEnd& end);
  // Removes the open temp file, unless `keep_partial` and it is a remembered partial file.
  void DiscardOpenFile(bool keep_partial = false);
  Status Finish();
  Status LinkFollowers();
  Status BreakStaleLinks();
  Status CopyToTemp(uint32_t id, int dir_fd, const std::string& name, const std::string& temp);
  // Copies the data regions of the first `size` bytes of `in` to `out` (holes stay holes).
  Status CopyDataRegions(int in, int out, uint64_t size, const std::string& path);
  Status RefuseEmptySourceWipe(int root_fd);
  Status Sweep();
  // Deletes what each listed directory has that the manifest does not (listings[i] of paths[i]).
  Status SweepListed(const std::vector<std::string>& paths,
                     const std::vector<Result<std::vector<std::string>>>& listings);
  // A partial manifest's kEntryGone entries: what the target has at each is deleted.
  Status DeleteGone();
  Status HandleGoneEntry(const protocol::Entry& entry, uint32_t parent_id);
  // Forgets the target's base token before this stage changes anything (the next partial stage
  // then needs a full walk until this one commits), and keeps a new one when it has.
  Status DropBase();
  void KeepBase();
  void CountDeletedTree(int dir_fd, const std::string& name, const std::string& path);
  Status ApplyDirectoryMetadata();
  Status SyncVolume();

  // A cached descriptor of directory `parent`, valid until the next ParentFd call (which may
  // evict it): dup it to hold two at once.
  Result<int> ParentFd(std::string_view parent);
  void Item(protocol::ItemAction action, const protocol::Entry& entry);
  void Item(protocol::ItemAction action, protocol::EntryType type, std::string path);
  Status FlushReplies();
  bool reporting() const { return options_.itemize || options_.dry_run; }
  std::string Display(std::string_view path) const { return JoinPath(root_display_, path); }
  Status TargetError(const Status& s, std::string_view path) const;

  Channel& channel_;
  int root_fd_;
  std::string root_display_;
  SyncOptions options_;
  ExcludeList excludes_;
  MetadataPolicy policy_;
  std::string temp_tag_;  // unique per session: ".ferry-tmp.<session>."
  // New files are written as unnamed temp files (O_TMPFILE) while the file system takes them
  // and the process may hold a commit queue of open files; see CreateTemp.
  std::atomic<bool> unnamed_temps_{true};

  EntryStore entries_;  // by id
  // The main thread appends to entries_ under it (exclusive); a lane copies an entry out under
  // it (shared).
  std::shared_mutex entries_mutex_;
  // Ids by 96 bits of the xxh3-128 of their path, not a second copy of every path (a receiver
  // holds one entry per source file; two paths of a stage of 4 million colliding in 96 bits is
  // a chance of 1e-16). 96, not 128: a slot is 20 bytes, not 24 (8 MiB at a million files).
  using PathKeyBits = std::array<uint8_t, 12>;
  struct PathKeyHash {
    size_t operator()(const PathKeyBits& key) const {
      size_t v;
      std::memcpy(&v, key.data(), sizeof(v));
      return v;
    }
  };
  // Compared inline; std::array's == is a call to memcmp (2 % of a no-change stage's receiver
  // CPU, perf).
  struct PathKeyEqual {
    bool operator()(const PathKeyBits& a, const PathKeyBits& b) const {
      uint64_t a_head, b_head;
      uint32_t a_tail, b_tail;
      std::memcpy(&a_head, a.data(), sizeof(a_head));
      std::memcpy(&b_head, b.data(), sizeof(b_head));
      std::memcpy(&a_tail, a.data() + 8, sizeof(a_tail));
      std::memcpy(&b_tail, b.data() + 8, sizeof(b_tail));
      return a_head == b_head && a_tail == b_tail;
    }
  };
  static_assert(sizeof(PathKeyBits) == sizeof(uint64_t) + sizeof(uint32_t), "a path key is 12 bytes");
  static PathKeyBits PathKey(std::string_view path) {
    const Hash128 full = BlockHash(path);
    PathKeyBits key;
    std::memcpy(key.data(), full.data(), key.size());
    return key;
  }
  // Open addressing with the keys inline (one cache miss a lookup, not a bucket's chain): three
  // lookups an entry, 9 % of a no-change stage's receiver CPU as a std::unordered_map.
  tsl::robin_map<PathKeyBits, uint32_t, PathKeyHash, PathKeyEqual> ids_by_path_;
  // By id, what this stage knows of a directory: kDirAbsent from the target (a dry run), or
  // kDirMade by this stage (so nothing is in it that this stage did not put there).
  enum : uint8_t { kDirAbsent = 1, kDirMade = 2 };
  std::vector<uint8_t> missing_dir_;
  // file_state_ values: not needed, NEEDed (its content may arrive), finished.
  static constexpr uint8_t kFileNone = 0, kFileNeeded = 1, kFileFinished = 2;
  std::vector<uint8_t> file_state_;   // by id: 0 none, 1 needed, 2 finished
  struct Directory {
    uint32_t id;
    // Its owner, mode and xattrs already matched the source's when its entry arrived: at the
    // end it needs its metadata set only if its mtime moved (an entry created or deleted in it).
    bool settled;
    // Only some of its children are in this (partial) manifest: the rest is left as it is.
    bool partial = false;
  };
  std::vector<Directory> directories_;  // in manifest order
  std::vector<uint32_t> followers_;   // hard links, made after every file is in place
  std::vector<uint32_t> gone_;        // kEntryGone entries: deleted with the sweep
  struct LinkCandidate {
    uint32_t id;
    bool metadata_differs;
  };
  std::vector<LinkCandidate> link_candidates_;  // unchanged files whose target has other links
  std::map<std::string, UniqueFd, std::less<>> dir_cache_;
  // The last directory ParentFd gave (consecutive entries share it): one compare instead of a
  // walk of dir_cache_ (whose string compares were 1.5 % of a no-change stage's receiver CPU).
  std::string last_parent_;
  int last_parent_fd_ = -1;
  // Every file system seen under the volume (nested mounts), for the final syncfs; descriptors
  // held for the session so that syncfs reports every writeback error since it began.
  std::map<dev_t, UniqueFd> file_systems_;

  std::vector<uint32_t> pending_needs_;
  std::vector<bool> pending_with_basis_;
  std::vector<protocol::Hashes> pending_hashes_;
  std::unordered_map<uint32_t, Basis> bases_;  // offered, not yet patched
  uint64_t basis_leaves_in_flight_ = 0;
  std::vector<Written> written_;  // guarded by finish_mutex_
  // The ids of the files ferry wrote (whole or patched) and gave their entry's xattrs; with
  // xattr_cache_ only. Guarded by finish_mutex_.
  std::vector<uint32_t> xattrs_written_;
  StateCache* cache_ = nullptr;
  std::unique_ptr<XattrCache> xattr_cache_;  // may be null
  uint64_t root_dev_ = 0, root_ino_ = 0;  // the volume, for its partial files in the cache
  std::vector<protocol::Item> pending_items_;
  uint64_t needs_total_ = 0;
  // FILE_ENDs, counted by the main thread and (files sent whole) the lanes.
  std::atomic<uint64_t> needs_finished_{0};
  std::atomic<uint64_t> files_arrived_{0};  // complete or changed: what DONE must count
  bool entries_complete_ = false;
  bool scan_incomplete_ = false;
  std::optional<OpenFile> open_file_;
  std::unique_ptr<Committer> committer_;
  std::unique_ptr<TargetInspector> inspector_;  // a tree target: each batch looked at in parallel
  std::vector<Inspection> inspections_;          // of the batch being handled
  protocol::Commit figures_;  // files_written, bytes_written, files_changed_during_read: finish_mutex_
  std::mutex finish_mutex_;

  std::vector<Channel*> lanes_;
  std::vector<std::thread> lane_threads_;
  std::atomic<bool> lanes_stopping_{false};  // every file is in: a lane's end is no failure
  std::mutex incoming_mutex_;  // guards what follows, to lane_failure_
  std::condition_variable incoming_changed_;
  // By id: needed whole and not yet incoming (one bit a file; a full stage needs every file),
  // until its first DATA or HOLE (or the FILE_END of an empty file) makes it incoming.
  std::vector<bool> whole_needed_;
  std::vector<bool> name_free_;  // by id, beside whole_needed_: NeedFile's name_free
  // By id: given up by the sender (vanished, unreadable) before any of its data came: what still
  // comes on a data stream is dropped.
  std::vector<bool> whole_discarded_;
  std::vector<bool> whole_ended_;  // by id: its FILE_END came (a second one is refused)
  // FILE_ENDs that came before any of their file's data (on the session's connection, ahead of
  // the data streams: on a tree of small files the streams' socket buffers held 40,000 files at
  // once, each an Incoming of 330 bytes, a third of a full stage's receiver heap). 48 bytes each.
  std::unordered_map<uint32_t, Ended> early_ends_;
  std::unordered_map<uint32_t, std::shared_ptr<Incoming>> incoming_;
  size_t incoming_open_ = 0;  // needed or incoming, not finished nor discarded
  Status lane_failure_;
  DirSlot control_dir_;  // the main thread's, for whole files
  SyncProgress* progress_;
  SyncProgress no_progress_;
  ItemSink item_sink_;
  uint64_t bytes_total_ = 0;
};

}  // namespace ferry
