#include "agent/xattr_cache.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "agent/hash.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {
namespace {

constexpr char kMagic[4] = {'F', 'X', 'C', '1'};
constexpr uint32_t kFormatVersion = 1;
// Records a file holds at most: a bound for the load, far above any session's entries.
constexpr uint64_t kRecordsMax = uint64_t{kEntriesPerSessionMax};
// Header: magic, version, filter (privileged, skip_selinux, 2 zero bytes), record count.
constexpr size_t kHeaderBytes = 4 + 4 + 4 + 8;
constexpr size_t kHashBytes = 16;  // xxh3-128 of everything before it
static_assert(sizeof(protocol::Hash128) == kHashBytes);

int64_t Nanos(const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

void PutU16(std::string* out, uint16_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof(v)); }
void PutU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof(v)); }
void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof(v)); }

// Reads from a loaded file; every read is bounds-checked (the file may be damaged).
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  template <typename T>
  bool Get(T* v) {
    if (data_.size() - at_ < sizeof(T)) return false;
    std::memcpy(v, data_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  bool Bytes(size_t n, std::string* out) {
    if (data_.size() - at_ < n) return false;
    out->assign(data_.data() + at_, n);
    at_ += n;
    return true;
  }
  bool done() const { return at_ == data_.size(); }

 private:
  std::string_view data_;
  size_t at_ = 0;
};

protocol::Hash128 HashOf(std::string_view bytes) {
  Xxh3Hasher hasher;
  hasher.Update(bytes.data(), bytes.size());
  return hasher.Finish();
}

}  // namespace

std::unique_ptr<XattrCache> XattrCache::Open(const std::string& state_dir, int root_fd,
                                             const XattrFilter& filter) {
  if (state_dir.empty() || filter.none || root_fd < 0) return nullptr;
  struct stat root;
  if (::fstat(root_fd, &root) != 0) return nullptr;
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    LOG_WARN("xattr cache: cannot make '" + state_dir + "': " + std::strerror(errno) +
             "; every xattr is read");
    return nullptr;
  }
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  std::string path = state_dir + "/xattrs-" + std::to_string(root.st_dev) + "-" +
                     std::to_string(root.st_ino) + ".cache";
  auto cache = std::make_unique<XattrCache>(std::move(path), filter, Nanos(now));
  cache->Load();
  return cache;
}

XattrCache::XattrCache(std::string path, const XattrFilter& filter, int64_t now_ns)
    : path_(std::move(path)), filter_(filter) {
  // As the sender's racily-clean rule: one tick of the coarse clock, and a millisecond more.
  timespec tick{};
  ::clock_getres(CLOCK_REALTIME_COARSE, &tick);
  untrusted_from_ns_ = now_ns - Nanos(tick) - 1'000'000;
}

bool XattrCache::Load() {
  records_.clear();
  lists_.clear();
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return false;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  if (data.size() < kHeaderBytes + kHashBytes) return false;
  std::string_view body(data.data(), data.size() - kHashBytes);
  protocol::Hash128 stored;
  std::memcpy(stored.data(), data.data() + body.size(), kHashBytes);
  if (HashOf(body) != stored) {
    LOG_WARN("xattr cache '" + path_ + "' is damaged: ignored, every xattr is read this stage");
    return false;
  }
  Reader in(body);
  char magic[4];
  uint32_t version = 0;
  uint8_t privileged = 0, skip_selinux = 0;
  uint16_t zero = 0;
  uint64_t count = 0;
  if (!in.Get(&magic) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) return false;
  if (!in.Get(&version) || version != kFormatVersion) return false;
  if (!in.Get(&privileged) || !in.Get(&skip_selinux) || !in.Get(&zero) || !in.Get(&count)) return false;
  // Read under another filter, the lists hold other names: not this filter's records.
  if ((privileged != 0) != filter_.privileged || (skip_selinux != 0) != filter_.skip_selinux) return false;
  if (count > kRecordsMax || count > body.size() / 22) return false;  // 22: a record's least bytes
  std::vector<Record> records(static_cast<size_t>(count));
  std::vector<std::vector<protocol::Xattr>> lists;
  for (Record& r : records) {
    uint16_t xattrs_count = 0;
    if (!in.Get(&r.dev) || !in.Get(&r.ino) || !in.Get(&r.ctime_ns) || !in.Get(&xattrs_count)) return false;
    if (xattrs_count > kXattrsPerEntryMax) return false;
    if (xattrs_count == 0) continue;
    std::vector<protocol::Xattr> list(xattrs_count);
    for (protocol::Xattr& x : list) {
      uint16_t name_bytes = 0;
      uint32_t value_bytes = 0;
      if (!in.Get(&name_bytes) || name_bytes > kXattrNameMaxBytes || !in.Bytes(name_bytes, &x.name)) return false;
      if (!in.Get(&value_bytes) || value_bytes > kXattrValueMaxBytes || !in.Bytes(value_bytes, &x.value)) return false;
    }
    lists.push_back(std::move(list));
    r.list_plus1 = static_cast<uint32_t>(lists.size());
  }
  if (!in.done()) return false;
  for (size_t i = 1; i < records.size(); ++i) {
    if (!Before(records[i - 1], records[i])) return false;  // sorted, no duplicates: written so
  }
  records_ = std::move(records);
  lists_ = std::move(lists);
  hit_ = std::make_unique<std::atomic<uint8_t>[]>(records_.size());
  return true;
}

const std::vector<protocol::Xattr>* XattrCache::Find(const struct stat& st) {
  static const std::vector<protocol::Xattr> kNone;
  if (st.st_dev > UINT32_MAX) return nullptr;
  Record key;
  key.dev = static_cast<uint32_t>(st.st_dev);
  key.ino = st.st_ino;
  auto it = std::lower_bound(records_.begin(), records_.end(), key, Before);
  if (it == records_.end() || it->dev != key.dev || it->ino != key.ino) return nullptr;
  if (it->ctime_ns != Nanos(st.st_ctim)) return nullptr;
  hit_[static_cast<size_t>(it - records_.begin())].store(1, std::memory_order_relaxed);
  return it->list_plus1 == 0 ? &kNone : &lists_[it->list_plus1 - 1];
}

bool XattrCache::Trusted(const Record& r, bool fine_grained) const {
  return fine_grained || r.ctime_ns < untrusted_from_ns_;
}

void XattrCache::Remember(const struct stat& st, const std::vector<protocol::Xattr>& xattrs,
                          bool fine_grained) {
  if (st.st_dev > UINT32_MAX || xattrs.size() > kXattrsPerEntryMax) return;
  Record r;
  r.dev = static_cast<uint32_t>(st.st_dev);
  r.ino = st.st_ino;
  r.ctime_ns = Nanos(st.st_ctim);
  if (!Trusted(r, fine_grained)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!xattrs.empty()) {
    added_lists_.push_back(xattrs);
    r.list_plus1 = static_cast<uint32_t>(added_lists_.size());
  }
  added_.push_back(r);
}

void XattrCache::ReserveRemembered(size_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  added_.reserve(added_.size() + count);
}

size_t XattrCache::remembered_count() const {
  return added_.size();
}

// Calls emit(record, list) for what Save keeps, in (dev, ino) order: the loaded records found
// this stage and the remembered ones, which win over a loaded one of the same inode (found and
// then read again: it changed in between); an inode remembered twice (hard links) once.
// REQUIRES: mutex_ held, added_ sorted.
template <typename Emit>
void XattrCache::ForEachKept(const Emit& emit) const {
  size_t i = 0, j = 0;
  const Record* last = nullptr;
  while (i < records_.size() || j < added_.size()) {
    if (i < records_.size() && hit_[i].load(std::memory_order_relaxed) == 0) {
      ++i;
      continue;
    }
    const Record* pick = nullptr;
    const std::vector<protocol::Xattr>* list = nullptr;
    if (j < added_.size() && (i == records_.size() || !Before(records_[i], added_[j]))) {
      pick = &added_[j++];
      if (pick->list_plus1 != 0) list = &added_lists_[pick->list_plus1 - 1];
      if (i < records_.size() && !Before(*pick, records_[i])) ++i;  // the same inode: superseded
    } else {
      pick = &records_[i++];
      if (pick->list_plus1 != 0) list = &lists_[pick->list_plus1 - 1];
    }
    if (last != nullptr && !Before(*last, *pick)) continue;
    emit(*pick, list);
    last = pick;
  }
}

Status XattrCache::Save() {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t hits = 0;
  for (size_t i = 0; i < records_.size(); ++i) hits += hit_[i].load(std::memory_order_relaxed);
  if (added_.empty() && hits == records_.size()) return Status::Ok();  // as loaded
  std::stable_sort(added_.begin(), added_.end(), Before);
  uint64_t count = 0;
  ForEachKept([&](const Record&, const std::vector<protocol::Xattr>*) { count += 1; });
  uint64_t nonce = 0;
  if (::getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) nonce = static_cast<uint64_t>(::getpid());
  const std::string temp = path_ + ".tmp-" + std::to_string(nonce);
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::Errno(errno, "write xattr cache '" + temp + "'");
  // Written through a buffer of 1 MiB (never the whole file in memory: a million inodes are
  // 22 MiB), hashed as it goes.
  constexpr size_t kBufferBytes = 1 << 20;
  std::string out;
  out.reserve(kBufferBytes + 4096);
  Xxh3Hasher hasher;
  int write_errno = 0;
  auto write_all = [&](std::string_view bytes) {
    for (size_t done = 0; done < bytes.size() && write_errno == 0;) {
      ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) write_errno = n < 0 ? errno : EIO;
      if (n > 0) done += static_cast<size_t>(n);
    }
  };
  auto flush = [&] {
    hasher.Update(out.data(), out.size());
    write_all(out);
    out.clear();
  };
  out.append(kMagic, sizeof(kMagic));
  PutU32(&out, kFormatVersion);
  out.push_back(filter_.privileged ? 1 : 0);
  out.push_back(filter_.skip_selinux ? 1 : 0);
  PutU16(&out, 0);
  PutU64(&out, count);
  ForEachKept([&](const Record& r, const std::vector<protocol::Xattr>* list) {
    PutU32(&out, r.dev);
    PutU64(&out, r.ino);
    PutU64(&out, static_cast<uint64_t>(r.ctime_ns));
    PutU16(&out, static_cast<uint16_t>(list == nullptr ? 0 : list->size()));
    if (list != nullptr) {
      for (const protocol::Xattr& x : *list) {
        PutU16(&out, static_cast<uint16_t>(x.name.size()));
        out += x.name;
        PutU32(&out, static_cast<uint32_t>(x.value.size()));
        out += x.value;
      }
    }
    if (out.size() >= kBufferBytes) flush();
  });
  flush();
  const protocol::Hash128 hash = hasher.Finish();
  write_all(std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
  if (write_errno != 0) {
    ::unlink(temp.c_str());
    return Status::Errno(write_errno, "write xattr cache '" + temp + "'");
  }
  // Not made durable: after a crash a torn file fails its checksum and is ignored.
  if (::rename(temp.c_str(), path_.c_str()) != 0) {
    Status s = Status::Errno(errno, "replace xattr cache '" + path_ + "'");
    ::unlink(temp.c_str());
    return s;
  }
  return Status::Ok();
}

}  // namespace ferry
