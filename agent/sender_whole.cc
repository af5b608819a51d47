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

}  // namespace

void Sender::QueueWholeFile(uint32_t id, uint64_t size) {
  auto file = std::make_shared<Outgoing>();
  file->id = id;
  // One range without lanes (the session channel sends it in order); else ranges the streams share.
  const uint64_t range = lanes_.empty() ? std::max<uint64_t>(size, 1) : kStreamRangeBytes;
  for (uint64_t start = 0; start < size || (start == 0 && size == 0); start += range) {
    ranges_.push_back({file, start, std::min(size, start + range)});
    file->ranges_left += 1;
    if (size == 0) break;
  }
  whole_pending_ += 1;
}

void Sender::LaneLoop(Channel& lane) {
  Keepalive keepalive(lane);  // the receiver's lane reader times out on a silent stream
  Worker worker;
  worker.channel = &lane;
  for (;;) {
    Range range;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return !ranges_.empty() || need_end_ || !failure_.ok(); });
      if (!failure_.ok() || ranges_.empty()) return;  // failed, or every range is taken
      range = std::move(ranges_.front());
      ranges_.pop_front();
    }
    if (Status s = SendRange(worker, range); !s.ok()) {
      Fail(s);
      channel_.Shutdown();  // unblocks the session's threads
      return;
    }
  }
}

Status Sender::SendRange(Worker& worker, const Range& range) {
  Outgoing& f = *range.file;
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (!f.started) {
      {
        std::lock_guard<std::mutex> entries_lock(mutex_);  // the scanner may be appending
        f.entry = entries_[f.id];
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
    FERRY_RETURN_IF_ERROR(SendWholeRange(worker, fd.get(), entry, f.block_size, range.start, range.end,
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
  Status s = EndFile(entry, end, f.data_bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  whole_pending_ -= 1;
  changed_.notify_all();
  return s;
}

Status Sender::SendWholeRange(Worker& worker, int fd, const Entry& entry, uint32_t bs, uint64_t start,
                              uint64_t end, Hash128* leaves, RangeResult* result) {
  CHECK(start % bs == 0);
  CHECK(end <= entry.size);
  static_assert(kDataChunkMaxBytes % kBlockSizeMax == 0, "a chunk holds whole blocks");
  Channel& channel = *worker.channel;
  auto send_hole = [&](uint64_t offset, uint64_t length) {
    return channel.SendMessage(MessageType::kHole, protocol::Hole{entry.id, offset, length});
  };
  // The first chunk is the sample: when it does not compress, the rest of the range is not tried.
  bool try_compress = true, first_chunk = true;
  for (uint64_t at = start; at < end;) {
    uint64_t region_start = end, region_end = end;
    Result<bool> more = NextDataRegion(fd, at, end, &region_start, &region_end);
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
    for (uint64_t chunk = data_start; chunk < data_end;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kDataChunkMaxBytes, data_end - chunk));
      std::string& payload = worker.payload;
      payload.clear();
      protocol::WireWriter w(&payload);
      w.Varint(entry.id);
      w.Varint(chunk);
      const size_t header = payload.size();
      payload.resize(header + want);
      size_t got = 0;
      while (got < want) {
        ssize_t n = ::pread(fd, payload.data() + header + got, want - got, static_cast<off_t>(chunk + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          result->outcome = FileOutcome::kReadError;
          result->message = "read '" + entry.path + "': " + std::strerror(errno);
          return Status::Ok();
        }
        if (n == 0) break;  // shrunk while read
        got += static_cast<size_t>(n);
      }
      const bool shrunk = got < want;
      if (shrunk) {  // what is gone counts as zeros, and the file is resent next stage
        std::memset(payload.data() + header + got, 0, want - got);
        result->outcome = Worse(result->outcome, FileOutcome::kChanged);
      }
      const std::string_view bytes = std::string_view(payload).substr(header);
      for (size_t i = 0; i < want; i += bs) leaves[(chunk + i) / bs] = BlockHash(bytes.substr(i, bs));
      bool compressed = false;
      FERRY_RETURN_IF_ERROR(channel.Send(MessageType::kData, payload, try_compress, &compressed));
      if (first_chunk && !compressed) try_compress = false;
      first_chunk = false;
      chunk += want;
      result->data_bytes += want;
      progress_->bytes_sent += want;
      if (shrunk) {
        if (chunk < end) FERRY_RETURN_IF_ERROR(send_hole(chunk, end - chunk));
        return Status::Ok();
      }
    }
    at = data_end;
  }
  return Status::Ok();
}

Status Sender::AwaitWholeFiles() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return whole_pending_ == 0 || !failure_.ok(); });
  return failure_;
}

}  // namespace ferry
