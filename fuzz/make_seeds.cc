// Writes the seed corpus of the fuzz targets: valid examples of every message, framed streams
// (raw and zstd), manifests with every entry type, and a real librsync delta.
// usage: fuzz_seeds DIR   (DIR/fuzz_messages, DIR/fuzz_frames, DIR/fuzz_entries,
//                          DIR/fuzz_rsync_patch are made and filled; fuzz/corpus is committed)
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "agent/rsync_delta.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace p = ferry::protocol;
using T = p::MessageType;

namespace {

std::string g_dir;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  std::string dir = g_dir + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

template <typename Message>
std::string Encoded(const Message& m) {
  std::string out;
  m.Encode(&out);
  return out;
}

p::Entries SampleEntries() {
  p::Entries batch;
  auto add = [&](p::EntryType type, const std::string& path) -> p::Entry& {
    p::Entry e;
    e.id = static_cast<uint32_t>(batch.entries.size());
    e.type = type;
    e.path = path;
    e.mode = type == p::EntryType::kDirectory ? 0755 : 0644;
    e.uid = 1000;
    e.gid = 1000;
    e.mtime_sec = 1'700'000'000;
    e.mtime_nsec = 123;
    batch.entries.push_back(e);
    return batch.entries.back();
  };
  add(p::EntryType::kDirectory, "");
  add(p::EntryType::kDirectory, "dir");
  add(p::EntryType::kFile, "dir/file").size = 12345;
  add(p::EntryType::kSymlink, "dir/link").link_target = "../outside/target";
  add(p::EntryType::kFile, "dir/hardlink").hardlink_leader_plus1 = 3;
  add(p::EntryType::kFifo, "fifo");
  add(p::EntryType::kCharDevice, "null").rdev = 0x103;
  p::Entry& x = add(p::EntryType::kFile, "with-xattrs");
  x.xattrs = {{"user.a", "1"}, {"user.b", std::string(40, 'v')}};
  x.has_content_hash = true;
  x.content_hash[0] = 0xab;
  return batch;
}

std::vector<std::pair<std::string, std::string>> SampleMessages() {
  std::vector<std::pair<std::string, std::string>> out;  // name, type byte + payload
  auto add = [&](const std::string& name, uint8_t type, const std::string& payload) {
    out.push_back({name, std::string(1, static_cast<char>(type)) + payload});
  };
  p::Hello hello;
  hello.capabilities = p::kCapZstd;
  hello.agent = "ferry 0.1.0";
  add("hello", 1, Encoded(hello));
  p::Welcome welcome;
  welcome.agent = "ferry 0.1.0";
  add("welcome", 2, Encoded(welcome));
  p::Open open;
  open.volume = "pgdata";
  open.subpath = "base";
  open.stage = 3;
  open.excludes = {"*.tmp", "lost+found"};
  open.streams = 4;
  add("open", 3, Encoded(open));
  p::OpenOk ok;
  ok.session_id = 7;
  ok.streams = 4;
  add("open_ok", 4, Encoded(ok));
  add("entries", 5, Encoded(SampleEntries()));
  p::EntriesEnd end;
  end.count = 8;
  add("entries_end", 6, Encoded(end));
  p::Need need;
  need.ids = {2, 7};
  need.with_basis = {false, true};
  add("need", 7, Encoded(need));
  add("need_end", 8, Encoded(p::Count{2}));
  std::string bytes(5000, 'd');
  p::Data data;
  data.id = 2;
  data.offset = 4096;
  data.bytes = bytes;
  add("data", 9, Encoded(data));
  p::FileEnd file_end;
  file_end.id = 2;
  file_end.size = 12345;
  file_end.message = "changed while read";
  add("file_end", 10, Encoded(file_end));
  add("done", 11, Encoded(p::Count{1}));
  p::Items items;
  items.items = {{p::ItemAction::kCreate, p::EntryType::kFile, "dir/file"}};
  add("items", 12, Encoded(items));
  p::Commit commit;
  commit.files_written = 3;
  add("commit", 13, Encoded(commit));
  p::Error error;
  error.code = 3;
  error.message = "volume busy";
  add("error", 14, Encoded(error));
  p::Hashes hashes;
  hashes.id = 7;
  hashes.block_size = 4096;
  hashes.basis_size = 3 * 4096;
  hashes.hashes.resize(3);
  add("hashes", 16, Encoded(hashes));
  p::Want want;
  want.id = 7;
  want.level = 1;
  want.nodes = {0, 5};
  add("want", 17, Encoded(want));
  p::Patch patch;
  patch.id = 7;
  patch.changed_bytes = 4096;
  add("patch", 18, Encoded(patch));
  p::Hole hole;
  hole.id = 7;
  hole.offset = 8192;
  hole.length = 4096;
  add("hole", 19, Encoded(hole));
  p::Piece piece;
  piece.id = 7;
  piece.flags = p::kPieceLast;
  piece.bytes = "rs\x02\x36";
  add("signature", 20, Encoded(piece));
  add("delta", 21, Encoded(piece));
  p::Join join;
  join.session_id = 7;
  join.stream = 1;
  add("join", 22, Encoded(join));
  p::BenchOpen bench;
  bench.bytes = 1 << 20;
  bench.seconds = 2;
  add("bench_open", 30, Encoded(bench));
  return out;
}

int MemFile(const std::string& content) {
  int fd = ::memfd_create("seed", MFD_CLOEXEC);
  if (fd < 0 || ::pwrite(fd, content.data(), content.size(), 0) != static_cast<ssize_t>(content.size())) return -1;
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 1;
  }
  g_dir = argv[1];
  ::mkdir(g_dir.c_str(), 0755);
  std::vector<std::pair<std::string, std::string>> messages = SampleMessages();
  for (const auto& [name, bytes] : messages) Write("fuzz_messages", name, bytes);

  // Streams of frames as a session would send them, raw and compressed.
  for (int level : {0, 3}) {
    p::FrameEncoder encoder(level == 0 ? std::nullopt : std::optional<int>(level));
    std::string stream;
    for (const auto& [name, bytes] : messages) {
      encoder.Encode(static_cast<uint8_t>(bytes[0]), std::string_view(bytes).substr(1), &stream);
    }
    Write("fuzz_frames", level == 0 ? "session_raw" : "session_zstd", stream);
  }
  std::string one;
  p::FrameEncoder(3).Encode(static_cast<uint8_t>(T::kEntries), Encoded(SampleEntries()), &one);
  Write("fuzz_frames", "entries_zstd", one);

  std::string entries(4, '\0');
  entries += Encoded(SampleEntries());
  Write("fuzz_entries", "every_type", entries);
  p::Entries tail = SampleEntries();
  tail.entries.erase(tail.entries.begin(), tail.entries.begin() + 2);
  for (size_t i = 0; i < tail.entries.size(); ++i) tail.entries[i].id = static_cast<uint32_t>(2 + i);
  tail.entries[2].hardlink_leader_plus1 = 0;
  std::string second("\x02\0\0\0", 4);
  second += Encoded(tail);
  Write("fuzz_entries", "second_batch", second);

  // A real delta: the basis the fuzz target uses, with an insert in the middle.
  std::string basis;
  for (int i = 0; i < 16; ++i) {
    for (size_t j = 0; j < 4096; ++j) basis.push_back(static_cast<char>(i * 31 + j));
  }
  std::string changed = basis.substr(0, 30000) + "an insert in the middle" + basis.substr(30000);
  int basis_fd = MemFile(basis), new_fd = MemFile(changed);
  ferry::Result<std::string> sig = ferry::rsync_delta::Signature(basis_fd, basis.size());
  std::string delta;
  if (!sig.ok() || !ferry::rsync_delta::Delta(*sig, new_fd, changed.size(), [&](std::string_view piece) {
                      delta.append(piece);
                      return ferry::Status::Ok();
                    }).ok()) {
    std::fprintf(stderr, "fuzz_seeds: librsync delta failed\n");
    return 1;
  }
  Write("fuzz_rsync_patch", "insert", delta);
  std::printf("seeds written to %s\n", g_dir.c_str());
  return 0;
}
