// Every limit ferry enforces, with its reason. A length or count read off the wire or a disk is
// checked against its bound here before it is used or allocated.
// Threading: constants only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

inline constexpr size_t kKiB = 1024;
inline constexpr size_t kMiB = 1024 * kKiB;

// --- Frames (protocol/FORMAT.md) ---
inline constexpr size_t kFrameHeaderBytes = 24;
// Largest decoded payload of one frame. Bounded so that a receiver's buffers are allocated once
// per session; 4 MiB holds a full data chunk plus its header with room to spare.
inline constexpr size_t kFramePayloadMaxBytes = 4 * kMiB;
// A compressed payload is kept only when it is smaller than the raw payload, so the wire
// payload is never larger than the decoded one.
inline constexpr size_t kFrameWireMaxBytes = kFramePayloadMaxBytes;
// Payloads smaller than this are never compressed: the zstd frame overhead eats the gain.
inline constexpr size_t kCompressMinBytes = 512;
// zstd window accepted from a peer (log2). 8 MiB covers level <= 19 at our frame size and
// stops a frame that claims a huge window from reserving memory.
inline constexpr int kZstdWindowLogMax = 23;

// --- File data ---
// File content travels in chunks of at most this size, one chunk per frame.
// --compress LEVEL: zstd levels 1..19 (20-22 need more window than kZstdWindowLogMax allows).
inline constexpr int kZstdLevelMax = 19;
inline constexpr size_t kDataChunkMaxBytes = 1 * kMiB;
static_assert(kDataChunkMaxBytes + 64 <= kFramePayloadMaxBytes, "a chunk and its header fit a frame");

// --- Block delta (agent/blocks.h) ---
// A file is hashed as fixed blocks of a power-of-two size near sqrt(size), within these bounds:
// small enough that a rewritten 8 KiB database page costs little more than itself, large
// enough that a huge image has few hashes.
inline constexpr uint32_t kBlockSizeMin = 4 * 1024;
inline constexpr uint32_t kBlockSizeMax = 1024 * 1024;
// Leaves per file (16 bytes each): 64 MiB of hashes at most; larger files get larger blocks
// or are sent whole.
inline constexpr uint32_t kBlocksPerFileMax = 1u << 22;
// The largest file ferry moves: every file is hashed as at most kBlocksPerFileMax blocks of at
// most kBlockSizeMax, so a receiver's memory for a file's hashes stays bounded whatever size a
// peer claims.
inline constexpr uint64_t kFileSizeMax = uint64_t{kBlockSizeMax} * kBlocksPerFileMax;  // 4 TiB
// Fanout of the hash tree over the leaves: a tree level has 1/16 of the nodes of the one below.
inline constexpr uint32_t kHashTreeFanout = 16;
// Hashes per HASHES frame (16 bytes each) and node indices per WANT frame.
inline constexpr size_t kHashesPerMessageMax = 16384;
// The receiver first offers the lowest tree level with at most this many nodes.
inline constexpr size_t kHashesFirstOfferMax = 256;
// HASHES a sender holds unused at any time (a receiver sends only what was asked for: the
// first offers, ≤ kHashesFirstOfferMax each, and answers to WANT); beyond it the receiver is
// misbehaving and the session ends.
inline constexpr uint64_t kHashesQueuedMaxBytes = 64ull * 1024 * 1024;
// Files smaller than this are sent whole: the exchange of hashes would cost more than it saves.
inline constexpr uint64_t kDeltaMinBytes = 64 * 1024;
// Files at least this large whose delta is at most half the file are patched in place (marked
// dirty in the state cache until durable); others are rebuilt in a temp file and renamed.
inline constexpr uint64_t kInPlaceMinBytes = 1 * 1024 * 1024;
// A large file arriving whole is made durable every this many bytes and remembered in the state
// cache as a partial file, so that a stage killed half-way resumes from there: at most this much
// of it is lost, for one fdatasync per checkpoint.
inline constexpr uint64_t kResumeCheckpointBytes = 32 * 1024 * 1024;
// Leaves the receiver holds for offered bases not yet answered (16 bytes each): beyond this a
// changed file is asked for whole rather than as a delta.
inline constexpr uint64_t kBasisLeavesInFlightMax = 1u << 23;

// --- Rolling-checksum delta (librsync, agent/rsync_delta.h) ---
// A signature is 12 bytes plus 36 per block (weak sum and 32-byte BLAKE2 sum), and librsync's
// recommended block is about sqrt(basis size), so 32 MiB signs a basis of up to ~800 GiB;
// larger files are sent whole. The sender needs about twice this in memory per delta.
inline constexpr size_t kRsyncSignatureMaxBytes = 32 * kMiB;
// Largest block length accepted in a peer's signature: librsync buffers about a block of the
// new file. Signatures within the bound above never need more (block length <= block count).
inline constexpr size_t kRsyncBlockMaxBytes = 1 * kMiB;
static_assert(kRsyncSignatureMaxBytes / 36 <= kRsyncBlockMaxBytes, "our signatures are accepted");
// A delta travels in pieces of at most this size, one piece per frame.
inline constexpr size_t kRsyncDeltaPieceBytes = 256 * kKiB;
// Files up to this size whose blocks mostly differ from the basis try librsync's rolling delta
// (content that shifted); larger ones go whole. librsync's delta over unmatched data runs at
// tens of MB/s, so this bounds the time a fruitless try can cost (about a second).
inline constexpr uint64_t kRsyncFallbackMaxBytes = 16 * kMiB;
static_assert(kRsyncDeltaPieceBytes + 64 <= kFramePayloadMaxBytes, "a piece and its header fit a frame");

// --- Paths and names (Linux limits) ---
inline constexpr size_t kNameMaxBytes = 255;         // NAME_MAX
inline constexpr size_t kPathMaxBytes = 4095;        // PATH_MAX without the NUL
inline constexpr size_t kSymlinkTargetMaxBytes = 4095;
inline constexpr size_t kVolumeNameMaxBytes = 128;

// --- Extended attributes (Linux VFS limits) ---
inline constexpr size_t kXattrNameMaxBytes = 255;     // XATTR_NAME_MAX
inline constexpr size_t kXattrValueMaxBytes = 65536;  // XATTR_SIZE_MAX
inline constexpr size_t kXattrsPerEntryMax = 1024;
// All xattrs of one entry, names and values: must fit one frame with the entry itself.
inline constexpr size_t kXattrBytesPerEntryMax = 1 * kMiB;
static_assert(kXattrBytesPerEntryMax + kPathMaxBytes + kSymlinkTargetMaxBytes + 256 <=
                  kFramePayloadMaxBytes,
              "the largest entry fits one frame");

// --- Manifest and replies ---
// Entries per ENTRY_BATCH frame, and the payload size at which the sender closes a batch.
inline constexpr size_t kEntriesPerBatchMax = 4096;
inline constexpr size_t kEntryBatchTargetBytes = 256 * kKiB;
// Entry ids are u32 on the wire; a session holds at most this many entries.
inline constexpr uint32_t kEntriesPerSessionMax = 1u << 30;
inline constexpr size_t kIdsPerBatchMax = 16384;  // NEED batches
inline constexpr size_t kItemsPerBatchMax = 4096;  // ITEM batches (itemised changes)
inline constexpr size_t kExcludePatternsMax = 1024;
inline constexpr size_t kExcludePatternMaxBytes = 4096;
inline constexpr size_t kMessageTextMaxBytes = 4096;  // error texts, peer names
// A CONTROL request or CONTROL_REPLY (a JSON object), and the stages a daemon remembers.
inline constexpr size_t kControlMessageMaxBytes = 1 * kMiB;
inline constexpr size_t kStageHistoryMax = 100;
// Stages a daemon pushes at once through its control API (each holds its source volume).
inline constexpr size_t kStagesRunningMax = 16;
// A daemon's stage that loses its connection (reset, timeout, a peer restarting) tries again,
// up to this many attempts in all, after 1 s, 2 s, 4 s, ... (at most kStageRetryBackoffMaxMs);
// each attempt resumes: the files the last one committed are not sent again.
inline constexpr uint32_t kStageAttemptsMax = 5;
// A tracked stage's manifest is built before it is sent (so that it can still become a walk):
// past this many entries (a directory of that many moved in) the stage walks the whole tree.
inline constexpr size_t kPartialManifestEntriesMax = size_t{1} << 17;
inline constexpr int kStageRetryBackoffMs = 1000;
inline constexpr int kStageRetryBackoffMaxMs = 16000;
// Pairs of a migration plan the coordinator stages at once (the rest wait their turn): each is
// a watched connection and a stage on its source daemon; half a daemon's stage slots, so two
// plans sharing a daemon still fit.
inline constexpr size_t kPlanPairsAtOnce = 8;
static_assert(kPlanPairsAtOnce <= kStagesRunningMax, "a plan's stages fit one daemon");
// How often a watched stage reports its progress.
inline constexpr int kStageProgressIntervalMs = 500;

// --- Sessions ---
inline constexpr size_t kSessionsMax = 64;
// Connections a daemon keeps open at once, sessions and those still in their handshake.
inline constexpr size_t kConnectionsMax = 2 * kSessionsMax;
// Data streams (--streams): extra connections of one session carrying whole-file DATA and HOLE.
// More than a handful only adds context switches on the hosts ferry runs on; 16 fills 40 Gbit/s
// (WDT's figure is ~8).
inline constexpr uint32_t kStreamsMax = 16;
// A large file is cut into ranges of this size spread over the streams (a multiple of every
// block size, so each range hashes on its own).
inline constexpr uint64_t kStreamRangeBytes = 16 * kMiB;
// The sender asks the kernel to read the files it is about to send whole (posix_fadvise
// WILLNEED) up to this many bytes ahead of its data streams, so that a cold source keeps the
// disk's queue full instead of one file's read at a time per stream.
inline constexpr uint64_t kSourcePrefetchBytes = 64 * kMiB;
// Files of this size or more go in the sender's queue of large files, the rest in its queue of
// small ones; half the data streams prefer each (see Sender::RangeQueue), and each queue is
// read ahead up to half of kSourcePrefetchBytes.
inline constexpr uint64_t kLargeRangeBytes = 1 * kMiB;
inline constexpr size_t kVolumesMax = 1024;
inline constexpr int kHandshakeTimeoutMs = 10'000;
// A peer that sends no frame for this long is gone. Each side sends KEEPALIVE after
// kKeepaliveIntervalMs without sending anything, so a busy peer (hashing, flushing, deleting)
// is never mistaken for a dead one; TCP keepalive probes find a dead host.
inline constexpr int kIdleTimeoutMs = 120'000;
inline constexpr int kKeepaliveIntervalMs = 5'000;
// A side whose write to its peer broke waits this long for the peer's ERROR, which is already
// in its receive queue when the peer failed and closed: the error message then names the
// cause ("no space on volume"), not the broken pipe it led to.
inline constexpr int kPeerErrorGraceMs = 2'000;
static_assert(kKeepaliveIntervalMs * 4 <= kIdleTimeoutMs, "several keepalives fit one idle timeout");
// How long a session waits for its volume when another session holds it: long enough for a
// session that is ending to let go, short enough to answer "volume busy" promptly.
inline constexpr int kVolumeLockWaitMs = 3'000;

// --bwlimit below this is refused: a full frame (4 MiB) must go well within the peer's idle
// timeout, since a send waits for its tokens as a whole.
inline constexpr uint64_t kBwlimitMinBytesPerSecond = 128 * 1024;
static_assert(kFramePayloadMaxBytes / kBwlimitMinBytesPerSecond * 1000 * 3 < kIdleTimeoutMs, "a frame fits the timeout");

// --- Bench (`ferry bench`) ---
// Bytes a bench may write into a volume (target write) or sync into it (end to end). Bounded so
// that a typo cannot fill a target's disk or run for hours; 16 GiB outlasts any write cache.
inline constexpr uint64_t kBenchBytesMax = 16ull * 1024 * 1024 * 1024;
inline constexpr uint64_t kBenchBytesDefault = 1ull * 1024 * 1024 * 1024;
// Less than this says nothing about a disk: a bench writes at least this much or refuses.
inline constexpr uint64_t kBenchBytesMin = 1 * kMiB;
// The daemon leaves half of the free space alone: it writes at most free / this.
inline constexpr uint64_t kBenchFreeSpaceFactor = 2;
// Seconds of each network direction: long enough for TCP to reach its window, short enough
// that a bench never looks like a hung session (kIdleTimeoutMs).
inline constexpr uint32_t kBenchSecondsMax = 60;
inline constexpr uint32_t kBenchSecondsDefault = 3;
// Filler bytes per BENCH_DATA frame, and per write() of the target write: one data chunk.
inline constexpr size_t kBenchChunkBytes = kDataChunkMaxBytes;
static_assert(kBenchSecondsMax * 1000 * 2 <= kIdleTimeoutMs, "a measurement ends well within the idle timeout");
static_assert(kBenchBytesMin <= kBenchBytesDefault && kBenchBytesDefault <= kBenchBytesMax, "default in range");

// --- I/O engine (agent/io/engine.h) ---
// Operations in flight per engine: the io_uring queue depth, and the size of each engine's slot
// and ready arrays (allocated when the engine is made). 256 ops of 1 MiB keep any disk busy;
// a deeper ring only costs locked kernel memory.
inline constexpr uint32_t kIoDepthMax = 256;
static_assert(kIoDepthMax * kDataChunkMaxBytes <= 256 * kMiB, "a full queue of chunks stays bounded");

// --- Commit ---
// The receiver makes finished temp files durable in groups (one syncfs per group) before it
// renames them into place; these bound how much unflushed data a group holds.
inline constexpr size_t kCommitGroupFilesMax = 2048;
inline constexpr size_t kCommitGroupBytesMax = 256 * kMiB;
// ... or once its first file has waited this long (what a killed receiver can lose).
inline constexpr int kCommitGroupIntervalMs = 2000;
// A file replaced by a rename keeps its old content allocated (an orphan inode, held by a
// descriptor) until a background thread lets it go: freeing blocks cost 300 us a file on a
// discard-mounted ext4, 0.3 s of a final stage that replaced 900 files. At most this many are
// held by one committer at once (each pins a descriptor and about 1.5 KB of kernel memory),
// holding at most kRetiredBytesMax of the target's space (a target near full gets it back
// soon); past either, a rename frees inline. All are let go when the stage ends.
inline constexpr size_t kRetiredFilesMax = 4096;
inline constexpr uint64_t kRetiredBytesMax = 64 * kMiB;

static_assert(kStreamRangeBytes % kBlockSizeMax == 0, "a stream range holds whole blocks");
static_assert(kSessionsMax >= 2 * (kStreamsMax + 1), "a session with all its streams fits the daemon");

}  // namespace ferry
