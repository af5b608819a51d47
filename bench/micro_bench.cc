// Micro-benchmarks of the hot paths (Google Benchmark): block hashing and the hash tree, zstd on
// a chunk, frame encode and decode, manifest encode and decode, the I/O engines reading a cached
// file; and what the source daemon's change tracking costs an application writing beside it.
// Run: build/bench/micro_bench.
// Inputs are made once per benchmark from a fixed seed; figures are bytes per second of input.
// Threading: each benchmark runs on the main thread (a ChangeTracker adds its reader thread).
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "agent/blocks.h"
#include "agent/change_tracker.h"
#include "agent/io/engine.h"
#include "base/bounds.h"
#include "protocol/compression.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace ferry {
namespace {

constexpr uint64_t kEngineFileBytes = 256 * kMiB;

// `size` bytes, half random and half repeated text: about what zstd sees in a database page.
std::string SemiCompressible(size_t size) {
  std::mt19937_64 rng(42);
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = (i / 4096) % 2 == 0 ? rng() : 0x2c2265756c6176ull;  // ,"value
    std::memcpy(&out[i], &v, std::min<size_t>(8, size - i));
  }
  return out;
}

void BM_BlockHasher(benchmark::State& state) {
  const std::string data = SemiCompressible(8 * kMiB);
  const uint32_t block = static_cast<uint32_t>(state.range(0));
  for (auto _ : state) {
    BlockHasher hasher(block);
    for (size_t at = 0; at < data.size(); at += kDataChunkMaxBytes) {
      hasher.Update(at, std::string_view(data).substr(at, kDataChunkMaxBytes));
    }
    benchmark::DoNotOptimize(hasher.Finish(data.size()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_BlockHasher)->Arg(kBlockSizeMin)->Arg(8192)->Arg(kBlockSizeMax);

void BM_HashTree(benchmark::State& state) {  // leaves of a 1 GiB file in 8 KiB blocks
  std::vector<Hash128> leaves(static_cast<size_t>(state.range(0)));
  for (size_t i = 0; i < leaves.size(); ++i) std::memcpy(leaves[i].data(), &i, sizeof(i));
  for (auto _ : state) benchmark::DoNotOptimize(HashTree(leaves).Root());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * leaves.size()));
}
BENCHMARK(BM_HashTree)->Arg(131072);

void BM_Compress(benchmark::State& state) {
  const std::string chunk = SemiCompressible(kDataChunkMaxBytes);
  protocol::Compressor compressor(static_cast<int>(state.range(0)));
  std::string out;
  for (auto _ : state) benchmark::DoNotOptimize(compressor.CompressIfSmaller(chunk, &out));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk.size()));
  state.counters["ratio"] = static_cast<double>(chunk.size()) / static_cast<double>(out.size());
}
BENCHMARK(BM_Compress)->Arg(1)->Arg(3);

void BM_Decompress(benchmark::State& state) {
  const std::string chunk = SemiCompressible(kDataChunkMaxBytes);
  protocol::Compressor compressor(1);
  std::string compressed, out;
  compressor.CompressIfSmaller(chunk, &compressed);
  protocol::Decompressor decompressor;
  for (auto _ : state) benchmark::DoNotOptimize(decompressor.Decompress(compressed, chunk.size(), &out));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk.size()));
}
BENCHMARK(BM_Decompress);

// A DATA frame of a 1 MiB chunk, raw (what loopback sends): header, checksum, decode in place.
void BM_FrameRoundTrip(benchmark::State& state) {
  const std::string payload = SemiCompressible(kDataChunkMaxBytes);
  protocol::FrameEncoder encoder(std::nullopt);
  protocol::FrameDecoder decoder;
  std::string buffer;
  for (auto _ : state) {
    char header[kFrameHeaderBytes];
    std::string_view wire;
    encoder.EncodeHeader(static_cast<uint8_t>(protocol::MessageType::kData), payload, false, header, &wire);
    protocol::FrameHeader decoded;
    benchmark::DoNotOptimize(protocol::DecodeFrameHeader(std::string_view(header, sizeof(header)), &decoded));
    buffer.assign(wire);
    benchmark::DoNotOptimize(decoder.DecodeInPlace(std::string_view(header, sizeof(header)), decoded, &buffer));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
}
BENCHMARK(BM_FrameRoundTrip);

// A batch of 4096 manifest entries like a PV's small files.
protocol::Entries ManifestBatch() {
  protocol::Entries batch;
  for (uint32_t i = 0; i < kEntriesPerBatchMax; ++i) {
    protocol::Entry e;
    e.id = i;
    e.type = protocol::EntryType::kFile;
    e.path = "app/d" + std::to_string(i / 100) + "/s" + std::to_string(i % 10) + "/f" + std::to_string(i) + ".dat";
    e.mode = 0644;
    e.uid = e.gid = 1000;
    e.size = 4096 + i;
    e.mtime_sec = 1795000000 + i;
    e.mtime_nsec = i * 1000;
    batch.entries.push_back(std::move(e));
  }
  return batch;
}

void BM_ManifestEncode(benchmark::State& state) {
  const protocol::Entries batch = ManifestBatch();
  std::string out;
  for (auto _ : state) {
    out.clear();
    batch.Encode(&out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch.entries.size()));
}
BENCHMARK(BM_ManifestEncode);

void BM_ManifestDecode(benchmark::State& state) {
  std::string encoded;
  ManifestBatch().Encode(&encoded);
  for (auto _ : state) benchmark::DoNotOptimize(protocol::Entries::Decode(encoded, 0));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEntriesPerBatchMax));
}
BENCHMARK(BM_ManifestDecode);

// A 256 MiB file, written once per process and read once so that it sits in the page cache; the
// name is unlinked at once, the descriptor stays open until exit.
int CachedFileFd() {
  static const int fd = [] {
    char name[] = "/tmp/ferry-bench-engine.XXXXXX";
    int f = ::mkstemp(name);
    if (f < 0) std::abort();
    ::unlink(name);
    const std::string chunk = SemiCompressible(kMiB);
    for (uint64_t at = 0; at < kEngineFileBytes; at += kMiB) {
      if (::pwrite(f, chunk.data(), kMiB, static_cast<off_t>(at)) != static_cast<ssize_t>(kMiB)) std::abort();
    }
    std::string sink(kMiB, '\0');
    for (uint64_t at = 0; at < kEngineFileBytes; at += kMiB) {
      if (::pread(f, sink.data(), kMiB, static_cast<off_t>(at)) != static_cast<ssize_t>(kMiB)) std::abort();
    }
    return f;
  }();
  return fd;
}

// Reads the whole cached file in 1 MiB ops, keeping `depth` (the argument) in flight: reaps
// whatever completed and refills the queue in one Submit. `fixed`: the buffers are registered.
void BM_EngineRead(benchmark::State& state, io::EngineKind kind, bool fixed) {
  const uint32_t depth = static_cast<uint32_t>(state.range(0));
  const int fd = CachedFileFd();
  Result<std::unique_ptr<io::Engine>> made = io::MakeEngine(kind, depth);
  if (!made.ok()) return state.SkipWithError(made.status().ToString().c_str());
  io::Engine& engine = **made;
  std::vector<char> buffers(depth * kMiB);
  if (fixed) {
    iovec all{buffers.data(), buffers.size()};
    if (Status s = engine.RegisterBuffers({&all, 1}); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  std::vector<io::Op> ops(depth);
  std::vector<io::Op*> batch, done(depth);
  for (auto _ : state) {
    uint64_t next = 0;
    batch.clear();
    for (uint32_t i = 0; i < depth; ++i, next += kMiB) {
      ops[i] = io::Op{io::OpKind::kRead, fd, next, buffers.data() + i * kMiB, kMiB, 0, i};
      batch.push_back(&ops[i]);
    }
    while (true) {
      if (!engine.Submit(batch.data(), batch.size()).ok()) return state.SkipWithError("Submit failed");
      if (engine.in_flight() == 0) break;
      Result<size_t> n = engine.Reap(done.data(), depth, 1);
      if (!n.ok()) return state.SkipWithError(n.status().ToString().c_str());
      batch.clear();
      for (size_t i = 0; i < *n; ++i) {
        if (done[i]->result != static_cast<int64_t>(kMiB)) return state.SkipWithError("short read");
        if (next >= kEngineFileBytes) continue;
        done[i]->offset = next;
        next += kMiB;
        batch.push_back(done[i]);
      }
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kEngineFileBytes));
}
BENCHMARK_CAPTURE(BM_EngineRead, uring, io::EngineKind::kUring, false)->Arg(1)->Arg(8)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineRead, uring_fixed, io::EngineKind::kUring, true)->Arg(1)->Arg(8)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineRead, posix, io::EngineKind::kPosix, false)->Arg(1)->Arg(8)->UseRealTime();

// The app's side of change tracking: a writer on the file system a ChangeTracker watches (the
// source daemon marks the whole file system of each volume it stages from), against the same
// writer unwatched. One operation (what is timed, per iteration): create a file in one of 64
// subdirectories, write 4 KiB, close it, append 512 bytes to a long-lived file, rename the new
// file within its directory, unlink it. Take() every kWatchTakeEvery operations, as stages would,
// so that the tracker's names stay bounded. Arg 0: no watch; 1: a ChangeTracker (default options,
// its reader thread on) on a temp directory under /tmp. Watching needs CAP_SYS_ADMIN (root).
// Real time: the reader thread's work competes with the writer for the cores.
constexpr int kWatchDirs = 64;
constexpr int64_t kWatchTakeEvery = 4096;
constexpr size_t kWatchFileBytes = 4096;
constexpr size_t kWatchAppendBytes = 512;

// A temp directory with kWatchDirs subdirectories and the long-lived file; removed with
// everything in it when destroyed. error() says what failed ("" when made).
class WatchTree {
 public:
  WatchTree() {
    char name[] = "/tmp/ferry-bench-watch.XXXXXX";
    if (::mkdtemp(name) == nullptr) {
      error_ = std::string("mkdtemp /tmp: ") + std::strerror(errno);
      return;
    }
    root_ = name;
    for (int d = 0; d < kWatchDirs; ++d) {
      if (::mkdir(Dir(d).c_str(), 0755) != 0) {
        error_ = "mkdir " + Dir(d) + ": " + std::strerror(errno);
        return;
      }
    }
    log_ = UniqueFd(::open((root_ + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log_.valid()) error_ = "open " + root_ + "/log: " + std::strerror(errno);
  }
  ~WatchTree() {
    log_.Reset();
    if (root_.empty()) return;
    ::unlink((root_ + "/log").c_str());
    for (int d = 0; d < kWatchDirs; ++d) ::rmdir(Dir(d).c_str());
    ::rmdir(root_.c_str());
  }
  const std::string& error() const { return error_; }
  const std::string& root() const { return root_; }
  int log_fd() const { return log_.get(); }
  std::string Dir(int d) const { return root_ + "/d" + std::to_string(d); }

 private:
  std::string root_, error_;
  UniqueFd log_;
};

// One operation of the writer on file `index`; false (errno set) when a call failed.
bool WriterOperation(const WatchTree& tree, const std::vector<std::string>& dirs, int64_t index,
                     const std::string& data, const std::string& record) {
  char made[PATH_MAX], renamed[PATH_MAX];
  const std::string& dir = dirs[static_cast<size_t>(index % kWatchDirs)];
  std::snprintf(made, sizeof(made), "%s/f%lld.tmp", dir.c_str(), static_cast<long long>(index));
  std::snprintf(renamed, sizeof(renamed), "%s/f%lld", dir.c_str(), static_cast<long long>(index));
  const int fd = ::open(made, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool written = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  if (::close(fd) != 0 || !written) return false;
  if (::write(tree.log_fd(), record.data(), record.size()) != static_cast<ssize_t>(record.size())) return false;
  if (::rename(made, renamed) != 0) return false;
  return ::unlink(renamed) == 0;
}

void BM_WriterUnderWatch(benchmark::State& state) {
  WatchTree tree;
  if (!tree.error().empty()) return state.SkipWithError(tree.error().c_str());
  std::unique_ptr<ChangeTracker> tracker;
  if (state.range(0) == 1) {
    Result<std::unique_ptr<ChangeTracker>> watched = ChangeTracker::Watch(tree.root());
    if (!watched.ok()) return state.SkipWithError(watched.status().ToString().c_str());
    tracker = std::move(watched.value());
  }
  std::vector<std::string> dirs;
  for (int d = 0; d < kWatchDirs; ++d) dirs.push_back(tree.Dir(d));
  const std::string data = SemiCompressible(kWatchFileBytes);
  const std::string record(kWatchAppendBytes, 'r');
  int64_t index = 0;
  size_t events = 0;
  for (auto _ : state) {
    if (!WriterOperation(tree, dirs, index, data, record)) {
      return state.SkipWithError(("writer: " + std::string(std::strerror(errno))).c_str());
    }
    ++index;
    if (tracker && index % kWatchTakeEvery == 0) events += tracker->Take().events;
  }
  if (tracker) {
    ChangeTracker::Changes last = tracker->Take();
    events += last.events;
    state.counters["events_per_op"] = static_cast<double>(events) / static_cast<double>(std::max<int64_t>(index, 1));
    if (!last.complete) state.counters["gap"] = 1;  // the queue overflowed: the reader fell behind
  }
  state.SetItemsProcessed(index);
}
BENCHMARK(BM_WriterUnderWatch)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace ferry

BENCHMARK_MAIN();
