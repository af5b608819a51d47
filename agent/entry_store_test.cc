#include "agent/entry_store.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace ferry {
namespace {

using protocol::Entry;
using protocol::EntryType;

Entry MakeEntry(uint32_t id, std::string path) {
  Entry e;
  e.id = id;
  e.path = std::move(path);
  e.mode = 0640 + id % 8;
  e.uid = 1000 + id;
  e.gid = 2000 + id;
  e.size = uint64_t{id} * 4099;
  e.mtime_sec = 1733500000 + id;
  e.mtime_nsec = id * 7;
  e.changed = id % 3 == 0;
  return e;
}

// Every entry comes back as it went in, the paths packed in chunks included: the root's empty
// one, ones that straddle a chunk's end, and one as long as a path may be; a path() taken early still reads right after the store grew by many chunks.
TEST(EntryStoreTest, GetGivesBackEveryEntryAndPathsStayPut) {
  EntryStore store;
  std::vector<Entry> added;
  added.push_back(MakeEntry(0, ""));
  added.back().type = EntryType::kDirectory;
  added.back().partial_listing = true;
  for (uint32_t id = 1; id < 20000; ++id) {
    std::string path = "mail/h" + std::to_string(id % 7) + "/cur/" + std::string(id % 97, 'x') + std::to_string(id);
    if (id == 5000) path = std::string(kPathMaxBytes, 'L');
    added.push_back(MakeEntry(id, path));
    if (id % 1000 == 1) {
      added.back().type = EntryType::kSymlink;
      added.back().link_target = "../target" + std::to_string(id);
    }
    if (id % 1000 == 2) added.back().xattrs = {{"user.k", "v" + std::to_string(id)}};
  }
  store.Add(added[0]);
  store.Add(added[1]);
  const std::string_view early = store.path(1);
  for (size_t id = 2; id < added.size(); ++id) store.Add(added[id]);
  ASSERT_EQ(store.size(), added.size());
  EXPECT_EQ(early, added[1].path);
  for (uint32_t id = 0; id < added.size(); ++id) {
    ASSERT_EQ(store.Get(id), added[id]) << "entry " << id;
    ASSERT_EQ(store.path(id), added[id].path);
    ASSERT_EQ(store.type(id), added[id].type);
    ASSERT_EQ(store.file_size(id), added[id].size);
  }
}

}  // namespace
}  // namespace ferry
