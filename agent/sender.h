// Sender: the source end of a stage. It scans the source on one thread while it streams the
// entries in batches, answers the receiver's NEEDs with file content (holes are not sent), and
// waits for the receiver's COMMIT. No round trip per file: scan, entries, needs and data overlap.
// A file that changes while it is read is sent, flagged, and resent by the next stage; a file
// that vanishes is counted. Neither fails the stage.
// Files without a basis go whole, cut into ranges (kStreamRangeBytes) that the data streams
// (SetLanes) send in parallel, each range block-aligned DATA and HOLE covering it exactly; the
// worker that finishes a file's last range sends its FILE_END on the session channel.
// Threading: Run() writes on the calling thread, scans on a second and reads on a third; one
// worker thread per lane sends whole files, and one more reads ahead of them (PrefetchLoop).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/blocks.h"
#include "agent/channel.h"
#include "agent/entry_store.h"
#include "agent/fs.h"
#include "agent/io/engine.h"
#include "agent/scan.h"
#include "agent/sync_types.h"
#include "base/result.h"

namespace ferry {

class Sender {
 public:
  // REQUIRES: the session is open (handshake done); `channel`, `progress` and the exclude list
  // in `scan_options` outlive Run().
  Sender(Channel& channel, std::string root, ScanOptions scan_options, SyncProgress* progress,
         ItemSink items);

  // Data streams besides the session channel (OPEN_OK granted them). REQUIRES: before Run();
  // the channels outlive it.
  void SetLanes(std::vector<Channel*> lanes) { lanes_ = std::move(lanes); }

  Result<SyncSummary> Run();

 private:
  // One chunk read through the engine: a DATA frame's payload, its header written first.
  struct ChunkRead {
    io::Op op;
    std::string payload;
    size_t header = 0;
    bool done = true;  // reaped (or never submitted): the buffer is free
  };
  // What a thread that reads files keeps between them.
  struct Worker {
    Channel* channel = nullptr;  // where its DATA and HOLE go
    std::string open_parent;     // the directory open_parent_fd holds
    UniqueFd open_parent_fd;
    std::string payload;  // reused for DATA frames of patches
    std::unique_ptr<io::Engine> engine;  // made at its first read
    ChunkRead reads[2];  // the chunk being sent and the one read ahead
  };
  // A file going whole, shared by the workers sending its ranges.
  struct Outgoing {
    uint32_t id = 0;
    std::mutex mutex;  // guards what follows
    bool started = false;
    protocol::Entry entry;  // copied when its first range starts
    uint32_t block_size = 0;
    std::vector<Hash128> leaves;  // each range fills its own blocks' (no lock needed for that)
    size_t ranges_left = 0;
    bool have_before = false;
    struct stat before {};
    protocol::FileOutcome outcome = protocol::FileOutcome::kComplete;
    std::string message;
    uint64_t data_bytes = 0;
  };
  // Queued for every needed file (a full stage queues them all): small. A file of one range gets
  // its Outgoing when a worker takes it; the ranges of a larger one share theirs.
  struct Range {
    uint32_t id = 0;
    uint64_t start = 0, end = 0;
    std::shared_ptr<Outgoing> file;  // null for a file of one range
  };
  struct RangeResult {
    protocol::FileOutcome outcome = protocol::FileOutcome::kComplete;
    std::string message;
    uint64_t data_bytes = 0;
  };
  void ScanLoop();
  void DescribeBlockVolume();
  void ReadLoop();
  Status HandleFrame(const Frame& frame, bool* finished);
  Status AcceptNeeds(const protocol::Need& need);
  Status SendEntries();
  // Takes the next batch of scanned entries not sent yet (waits a little for a full batch).
  // False when the scan is over and everything was taken.
  bool TakeEntries(protocol::Entries* batch, bool* scan_incomplete);
  // Sends every NEED received so far; with `wait`, until the receiver's NEED_END.
  Status SendNeededFiles(bool wait);
  Status SendFile(uint32_t id);
  // Opens a file of the manifest without following any symlink on its way (the app may have
  // swapped a directory for a symlink since the scan). Reuses the last parent directory.
  int OpenSourceFile(Worker& worker, const std::string& path);
  // *data_bytes: content bytes sent (holes are not).
  Status SendFileData(int fd, const protocol::Entry& entry, protocol::FileEnd* end, uint64_t* data_bytes);
  // Whole files (sender_whole.cc).
  void QueueWholeFile(uint32_t id, uint64_t size);  // REQUIRES: mutex_ held
  // `lane` sends ranges from queue `prefer` while it has any, else from the other.
  void LaneLoop(Channel& lane, size_t prefer);
  // Takes the next range to send (REQUIRES: mutex_ held, RangesQueued()).
  Range TakeRange(size_t prefer = kSmallRanges);
  // Asks the kernel to read ahead the ranges queued for the workers, up to kSourcePrefetchBytes
  // ahead of them (a hint: errors are left to the worker that reads the file).
  void PrefetchLoop();
  Status SendRange(Worker& worker, const Range& range);
  // Sends [start, end) of the file as block-aligned DATA (data regions) and HOLE (the rest),
  // filling `leaves` (the whole file's) for the blocks it covers. `dense`: the file's allocated
  // blocks cover its size (it has no holes to look for: two lseeks a file saved).
  Status SendWholeRange(Worker& worker, int fd, const protocol::Entry& entry, uint32_t block_size,
                        uint64_t start, uint64_t end, bool dense, Hash128* leaves, RangeResult* result);
  // Sends the data blocks [start, end) as DATA chunks, each read while the one before it is on
  // the wire. A file that ends early sets *shrunk_at to where its data stopped (the rest is to be
  // sent as a hole); it stays 0 otherwise.
  Status SendDataRun(Worker& worker, int fd, const protocol::Entry& entry, uint32_t block_size,
                     uint64_t start, uint64_t end, Hash128* leaves, RangeResult* result, uint64_t* shrunk_at);
  // Waits until `want` is reaped; reads reaped on the way (the one ahead) are marked done.
  static Status AwaitRead(io::Engine& engine, ChunkRead* reads, size_t count, ChunkRead& want);
  // Lays out a DATA payload in *payload: the file id and offset, then room for `data_bytes`
  // that the caller reads in. Returns where the data starts. The buffer's old bytes are reused
  // as they are: only growth is zero-filled (clear() and resize() zeroed every byte read).
  static size_t PrepareDataPayload(std::string* payload, uint32_t id, uint64_t offset, size_t data_bytes);
  // Waits until every file sent whole has had its FILE_END.
  Status AwaitWholeFiles();
  // The end of a needed file: bookkeeping, then FILE_END on `via` (the session channel, or with
  // kCapEndOnStream the data stream that carried a whole file's last range).
  Status EndFile(const protocol::Entry& entry, const protocol::FileEnd& end, uint64_t data_bytes, Channel& via);
  // Whether `fd`, stat'ed as `before` when its read began, moved while it was read.
  bool MovedWhileRead(int fd, const struct stat& before, const protocol::Entry& entry);
  // The file against the receiver's basis (sender_delta.cc): its block hashes, the tree descent
  // to the blocks that differ, then only those blocks.
  Status SendFileDelta(int fd, const protocol::Entry& entry, protocol::FileEnd* end, uint64_t* data_bytes);
  // Reads the blocks [first, last) of the file and sends them as DATA and HOLE, recording
  // their leaf hashes in `leaves`.
  Status SendBlocks(int fd, const protocol::Entry& entry, uint32_t block_size, uint64_t first,
                    uint64_t last, std::vector<Hash128>* leaves, protocol::FileEnd* end, uint64_t* data_bytes);
  // The next HASHES the receiver sent for file `id` (waits for it).
  Result<protocol::Hashes> AwaitHashes(uint32_t id);
  // Shifted content: librsync's delta against the signature the receiver sends of its basis.
  Status SendRsyncDelta(int fd, const protocol::Entry& entry, uint64_t* data_bytes);
  Status AcceptSignaturePiece(const protocol::Piece& piece);
  void Fail(const Status& status);

  Channel& channel_;
  std::string root_;
  ScanOptions scan_options_;
  UniqueFd root_fd_;
  SyncProgress* progress_;
  ItemSink items_;
  Worker control_;  // the session channel's own
  std::vector<Channel*> lanes_;
  std::vector<std::thread> lane_workers_;
  SyncSummary summary_;  // files_sent, errors: guarded by mutex_
  size_t entries_sent_ = 0;

  std::atomic<bool> cancel_scan_{false};  // set when the stage fails: the scan stops early
  std::mutex mutex_;  // guards the fields below, shared with the scan and reader threads
  std::condition_variable changed_;
  EntryStore entries_;  // by id, as scanned
  bool scan_done_ = false;
  Status scan_status_;
  ScanResult scan_result_;
  std::deque<uint32_t> needs_;  // files with a basis, for the delta
  // Ranges of files going whole, in two queues: small files cost the CPU (a file's system
  // calls on both sides), large ones the disk. Half the data streams prefer each queue (taking
  // from the other when theirs is empty), so that a tree of both keeps the CPU and the disk
  // busy at once instead of one after the other.
  struct RangeQueue {
    std::deque<Range> ranges;
    size_t prefetched = 0;           // ranges[0, this) were handed to the prefetcher
    uint64_t prefetched_bytes = 0;   // their bytes: what is read ahead of the workers
  };
  enum : size_t { kSmallRanges = 0, kLargeRanges = 1 };
  RangeQueue queues_[2];
  bool RangesQueued() const { return !queues_[0].ranges.empty() || !queues_[1].ranges.empty(); }
  size_t whole_pending_ = 0;    // files going whole without their FILE_END yet
  std::vector<bool> needed_;  // by id: asked for already (duplicates are a protocol error)
  std::vector<bool> with_basis_;  // by id: the NEED offered a basis
  std::vector<bool> finished_;    // by id: sent; HASHES arriving for it now are dropped
  uint64_t queued_hash_bytes_ = 0;  // in hashes_, bounded by kHashesQueuedMaxBytes
  uint32_t awaiting_signature_ = UINT32_MAX;  // the file whose SIGNATURE may arrive
  std::map<uint32_t, std::deque<protocol::Hashes>> hashes_;  // HASHES not yet used, by file
  struct Signature {
    std::string bytes;
    bool complete = false;
  };
  std::map<uint32_t, Signature> signatures_;  // SIGNATURE pieces, by file
  bool need_end_ = false;
  bool committed_ = false;
  protocol::Commit commit_;
  Status failure_;       // the first failure: everyone stops on it
  Status peer_failure_;  // the receiver's ERROR, which says why better than a broken pipe does
  bool reader_done_ = false;
};

}  // namespace ferry
