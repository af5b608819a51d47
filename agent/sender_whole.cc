// Sender, files sent whole: cut into ranges that the data streams send in parallel (or the session
// channel alone, without lanes). Each range goes as block-aligned DATA for its data regions and
// HOLE for the rest, so that the receiver can place and hash blocks in any order. See sender.h.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/sender.h"
#include "base/bounds.h"
#include "base/check.h"
#include "protocol/wire.h"

namespace ferry {

using protocol::Entry;
using protocol::FileOutcome;
using protocol::MessageType;

namespace {

// The worse of two outcomes: unreadable, then vanished, then changed, then complete.
FileOutcome Worse(FileOutcome a, FileOutcome b) {
  auto rank = [](FileOutcome o) {
    switch (o) {
      case FileOutcome::kReadError: return 3;
      case FileOutcome::kVanished: return 2;
      case FileOutcome::kChanged: return 1;
      case FileOutcome::kComplete: return 0;
    }
    return 3;
  };
  return rank(a) >= rank(b) ? a : b;
}

// Each of the two range queues is read ahead up to half the prefetch budget.
constexpr uint64_t kQueuePrefetchBytes = kSourcePrefetchBytes / 2;

}  // namespace

void Sender::QueueWholeFile(uint32_t id, uint64_t size) {
  whole_pending_ += 1;
  // One range without lanes (the session channel sends it in order); else ranges the streams share.
  const uint64_t range = lanes_.empty() ? size : kStreamRangeBytes;
  std::deque<Range>& queue = queues_[size >= kLargeRangeBytes ? kLargeRanges : kSmallRanges].ranges;
  if (size <= range) {
    queue.push_back({id, 0, size, nullptr});
    return;
  }
  auto file = std::make_shared<Outgoing>();
  file->id = id;
  for (uint64_t start = 0; start < size; start += range) {
    queue.push_back({id, start, std::min(size, start + range), file});
    file->ranges_left += 1;
  }
}

void Sender::LaneLoop(Channel& lane, size_t prefer) {
  Keepalive keepalive(lane);  // the receiver's lane reader times out on a silent stream
  Worker worker;
  worker.channel = &lane;
  for (;;) {
    Range range;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return RangesQueued() || need_end_ || !failure_.ok(); });
      if (!failure_.ok() || !RangesQueued()) return;  // failed, or every range is taken
      range = TakeRange(prefer);
    }
    if (Status s = SendRange(worker, range); !s.ok()) {
      Fail(s);
      channel_.Shutdown();  // unblocks the session's threads
      return;
    }
  }
}

Sender::Range Sender::TakeRange(size_t prefer) {
  RangeQueue& q = queues_[queues_[prefer].ranges.empty() ? 1 - prefer : prefer];
  Range range = std::move(q.ranges.front());
  q.ranges.pop_front();
  if (q.prefetched > 0) {
    const bool was_full = q.prefetched_bytes >= kQueuePrefetchBytes;
    q.prefetched -= 1;
    q.prefetched_bytes -= range.end - range.start;
    // The prefetcher waits on its byte budget (or on ranges, which come with a NEED's notify).
    if (was_full && q.prefetched_bytes < kQueuePrefetchBytes) changed_.notify_all();
  }
  return range;
}

void Sender::PrefetchLoop() {
  Worker worker;  // only its open parent directory
  for (;;) {
    Range range;
    std::string path;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Each queue is read ahead up to half the budget; the large files' first.
      auto next = [&]() -> RangeQueue* {
        for (RangeQueue* q : {&queues_[kLargeRanges], &queues_[kSmallRanges]}) {
          if (q->prefetched < q->ranges.size() && q->prefetched_bytes < kQueuePrefetchBytes) return q;
        }
        return nullptr;
      };
      auto all_handed = [&] {
        return queues_[0].prefetched >= queues_[0].ranges.size() && queues_[1].prefetched >= queues_[1].ranges.size();
      };
      changed_.wait(lock, [&] {
        return !failure_.ok() || committed_ || (need_end_ && all_handed()) || next() != nullptr;
      });
      RangeQueue* q = next();
      if (!failure_.ok() || committed_ || q == nullptr) return;
      range = q->ranges[q->prefetched];
      q->prefetched += 1;
      q->prefetched_bytes += range.end - range.start;
      path = entries_.path(range.id);  // not Get(): the whole entry is not needed
    }
    UniqueFd fd(OpenSourceFile(worker, path));
    if (fd.valid()) ::posix_fadvise(fd.get(), static_cast<off_t>(range.start),
                                    static_cast<off_t>(range.end - range.start), POSIX_FADV_WILLNEED);
  }
}

Status Sender::SendRange(Worker& worker, const Range& range) {
  std::shared_ptr<Outgoing> file = range.file;
  if (!file) {
    file = std::make_shared<Outgoing>();
    file->id = range.id;
    file->ranges_left = 1;
  }
  Outgoing& f = *file;
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (!f.started) {
      {
        std::lock_guard<std::mutex> entries_lock(mutex_);  // the scanner may be appending
        f.entry = entries_.Get(f.id);
      }
      f.block_size = BlockSizeFor(f.entry.size);
      f.leaves = ZeroLeaves(f.entry.size, f.block_size);
      f.started = true;
    }
  }
  const Entry& entry = f.entry;  // no longer changes
  RangeResult result;
  UniqueFd fd(OpenSourceFile(worker, entry.path));
  struct stat st;
  const bool is_file = fd.valid() && ::fstat(fd.get(), &st) == 0 &&
                       (S_ISREG(st.st_mode) || (scan_options_.block && S_ISBLK(st.st_mode)));
  if (!is_file) {
    bool gone = !fd.valid() && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR);
    if (fd.valid()) gone = true;  // no longer a regular file
    result.outcome = gone ? FileOutcome::kVanished : FileOutcome::kReadError;
    if (!gone) result.message = "open '" + entry.path + "': " + std::strerror(errno);
  } else {
    {
      std::lock_guard<std::mutex> lock(f.mutex);
      if (!f.have_before) {
        f.before = st;
        f.have_before = true;
      } else if (f.before.st_ino != st.st_ino || f.before.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
                 f.before.st_mtim.tv_sec != st.st_mtim.tv_sec || f.before.st_size != st.st_size) {
        result.outcome = FileOutcome::kChanged;  // replaced or written between two ranges' opens
      }
    }
    const bool dense = static_cast<uint64_t>(st.st_blocks) * 512 >= static_cast<uint64_t>(st.st_size);
    FERRY_RETURN_IF_ERROR(SendWholeRange(worker, fd.get(), entry, f.block_size, range.start, range.end, dense,
                                         f.leaves.data(), &result));
  }
  bool last = false;
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    f.outcome = Worse(f.outcome, result.outcome);
    if (f.message.empty()) f.message = result.message;
    f.data_bytes += result.data_bytes;
    CHECK(f.ranges_left > 0);
    last = --f.ranges_left == 0;
  }
  if (!last) return Status::Ok();
  // Every range is sent: the file's end. Its stat now, against its stat when reading began.
  if (is_file && f.outcome == FileOutcome::kComplete && MovedWhileRead(fd.get(), f.before, entry)) {
    f.outcome = FileOutcome::kChanged;
  }
  protocol::FileEnd end;
  end.id = f.id;
  end.size = entry.size;
  end.outcome = f.outcome;
  end.message = f.message;
  end.content_hash = HashTree(std::move(f.leaves)).Root();
  // Behind the file's data on its stream when the receiver takes it there: a FILE_END on the
  // session's connection passed tens of thousands of small files' data still in the streams'
  // socket buffers (or trailed them behind the manifest), and the receiver held each such file.
  const bool on_stream = (channel_.capabilities() & protocol::kCapEndOnStream) != 0;
  Status s = EndFile(entry, end, f.data_bytes, on_stream ? *worker.channel : channel_);
  std::lock_guard<std::mutex> lock(mutex_);
  whole_pending_ -= 1;
  if (whole_pending_ == 0) changed_.notify_all();  // only AwaitWholeFiles waits on the count
  return s;
}

Status Sender::SendWholeRange(Worker& worker, int fd, const Entry& entry, uint32_t bs, uint64_t start,
                              uint64_t end, bool dense, Hash128* leaves, RangeResult* result) {
  CHECK(start % bs == 0);
  CHECK(end <= entry.size);
  static_assert(kDataChunkMaxBytes % kBlockSizeMax == 0, "a chunk holds whole blocks");
  Channel& channel = *worker.channel;
  auto send_hole = [&](uint64_t offset, uint64_t length) {
    return channel.SendMessage(MessageType::kHole, protocol::Hole{entry.id, offset, length});
  };
  for (uint64_t at = start; at < end;) {
    uint64_t region_start = at, region_end = end;
    Result<bool> more = dense ? Result<bool>(true) : NextDataRegion(fd, at, end, &region_start, &region_end);
    if (!more.ok()) {
      result->outcome = FileOutcome::kReadError;
      result->message = "read '" + entry.path + "': " + more.status().ToString();
      return Status::Ok();
    }
    if (!*more) return at < end ? send_hole(at, end - at) : Status::Ok();
    // On the block grid: a block partly data is sent as data.
    const uint64_t data_start = std::max(at, region_start / bs * bs);
    const uint64_t data_end = std::min(end, (std::min(region_end, end) + bs - 1) / bs * bs);
    if (data_start > at) FERRY_RETURN_IF_ERROR(send_hole(at, data_start - at));
    uint64_t shrunk_at = 0;
    FERRY_RETURN_IF_ERROR(SendDataRun(worker, fd, entry, bs, data_start, data_end, leaves, result, &shrunk_at));
    if (result->outcome == FileOutcome::kReadError) return Status::Ok();
    if (shrunk_at != 0) return shrunk_at < end ? send_hole(shrunk_at, end - shrunk_at) : Status::Ok();
    at = data_end;
  }
  return Status::Ok();
}

Status Sender::AwaitRead(io::Engine& engine, ChunkRead* reads, size_t count, ChunkRead& want) {
  while (!want.done) {
    io::Op* done[2] = {nullptr, nullptr};
    Result<size_t> n = engine.Reap(done, 2, 1);
    if (!n.ok()) return n.status();
    for (size_t i = 0; i < *n; ++i) {
      for (size_t r = 0; r < count; ++r) {
        if (done[i] == &reads[r].op) reads[r].done = true;
      }
    }
  }
  return Status::Ok();
}

Status Sender::SendDataRun(Worker& worker, int fd, const Entry& entry, uint32_t bs, uint64_t start, uint64_t end,
                           Hash128* leaves, RangeResult* result, uint64_t* shrunk_at) {
  static_assert(kDataChunkMaxBytes <= UINT32_MAX, "a chunk fits an op");
  if (!worker.engine) worker.engine = io::MakeThreadEngine(2);
  io::Engine& engine = *worker.engine;
  ChunkRead* reads = worker.reads;
  auto submit = [&](ChunkRead& r, uint64_t offset) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kDataChunkMaxBytes, end - offset));
    r.header = PrepareDataPayload(&r.payload, entry.id, offset, want);
    r.op = io::Op{io::OpKind::kRead, fd, offset, r.payload.data() + r.header, static_cast<uint32_t>(want), 0, 0};
    r.done = false;
    io::Op* op = &r.op;
    return engine.Submit(&op, 1);
  };
  // Every read submitted is reaped before this returns: the buffers are the worker's.
  auto drain = [&](Status s) {
    for (ChunkRead& r : worker.reads) {
      if (Status a = AwaitRead(engine, reads, 2, r); !a.ok() && s.ok()) s = a;
    }
    return s;
  };
  // The first chunk is the sample: when it does not compress, the rest of the run is not tried.
  bool try_compress = true;
  size_t current = 0;
  FERRY_RETURN_IF_ERROR(submit(reads[0], start));
  for (uint64_t chunk = start; chunk < end;) {
    ChunkRead& r = reads[current];
    if (Status s = AwaitRead(engine, reads, 2, r); !s.ok()) return drain(s);
    const uint64_t next = chunk + r.op.length;
    if (next < end) {
      if (Status s = submit(reads[1 - current], next); !s.ok()) return drain(s);
    }
    if (r.op.result < 0) {
      result->outcome = FileOutcome::kReadError;
      result->message = "read '" + entry.path + "': " + std::strerror(static_cast<int>(-r.op.result));
      return drain(Status::Ok());
    }
    const size_t want = r.op.length, got = static_cast<size_t>(r.op.result);
    if (got < want) {  // shrunk while read: what is gone counts as zeros, resent next stage
      std::memset(r.payload.data() + r.header + got, 0, want - got);
      result->outcome = Worse(result->outcome, FileOutcome::kChanged);
      *shrunk_at = next;
    }
    const std::string_view bytes = std::string_view(r.payload).substr(r.header);
    for (size_t i = 0; i < want; i += bs) leaves[(chunk + i) / bs] = BlockHash(bytes.substr(i, bs));
    bool compressed = false;
    if (Status s = worker.channel->Send(MessageType::kData, r.payload, try_compress, &compressed); !s.ok()) {
      return drain(s);
    }
    if (chunk == start && !compressed) try_compress = false;
    result->data_bytes += want;
    progress_->bytes_sent += want;
    if (*shrunk_at != 0) return drain(Status::Ok());
    chunk = next;
    current = 1 - current;
  }
  return Status::Ok();
}

Status Sender::AwaitWholeFiles() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return whole_pending_ == 0 || !failure_.ok(); });
  return failure_;
}

}  // namespace ferry
