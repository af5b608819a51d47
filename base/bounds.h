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
inline constexpr size_t kDataChunkMaxBytes = 1 * kMiB;
static_assert(kDataChunkMaxBytes + 64 <= kFramePayloadMaxBytes, "a chunk and its header fit a frame");

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

// --- Sessions ---
inline constexpr size_t kSessionsMax = 64;
inline constexpr size_t kVolumesMax = 1024;
inline constexpr int kHandshakeTimeoutMs = 10'000;
// A peer that sends no frame for this long is gone. Each side sends KEEPALIVE after
// kKeepaliveIntervalMs without sending anything, so a busy peer (hashing, flushing, deleting)
// is never mistaken for a dead one; TCP keepalive probes find a dead host.
inline constexpr int kIdleTimeoutMs = 120'000;
inline constexpr int kKeepaliveIntervalMs = 5'000;
static_assert(kKeepaliveIntervalMs * 4 <= kIdleTimeoutMs, "several keepalives fit one idle timeout");
// How long a session waits for its volume when another session holds it: long enough for a
// session that is ending to let go, short enough to answer "volume busy" promptly.
inline constexpr int kVolumeLockWaitMs = 3'000;

// --- Commit ---
// The receiver makes finished temp files durable in groups (one syncfs per group) before it
// renames them into place; these bound how much unflushed data a group holds.
inline constexpr size_t kCommitGroupFilesMax = 2048;
inline constexpr size_t kCommitGroupBytesMax = 256 * kMiB;

}  // namespace ferry
