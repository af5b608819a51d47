// Micro-benchmarks of the hot paths (Google Benchmark): block hashing and the hash tree, zstd on
// a chunk, frame encode and decode, manifest encode and decode. Run: build/bench/micro_bench.
// Inputs are made once per benchmark from a fixed seed; figures are bytes per second of input.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "agent/blocks.h"
#include "base/bounds.h"
#include "protocol/compression.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace ferry {
namespace {

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

}  // namespace
}  // namespace ferry

BENCHMARK_MAIN();
