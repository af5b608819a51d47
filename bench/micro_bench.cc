// Micro-benchmarks of the hot paths (Google Benchmark): block hashing and the hash tree, zstd on
// a chunk, frame encode and decode, manifest encode and decode, the I/O engines reading a cached
// file. Run: build/bench/micro_bench.
// Inputs are made once per benchmark from a fixed seed; figures are bytes per second of input.
#include <fcntl.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "agent/blocks.h"
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

}  // namespace
}  // namespace ferry

BENCHMARK_MAIN();
