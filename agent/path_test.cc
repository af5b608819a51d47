#include "agent/path.h"

#include <gtest/gtest.h>

#include <string>

namespace ferry {
namespace {

TEST(ValidateRelativePathTest, AcceptsPlainPathsAndTheRoot) {
  for (const char* ok : {"", "a", "a/b/c", "name with spaces", ".hidden", "..foo", "a/.../b", "\xff\x01"}) {
    EXPECT_TRUE(ValidateRelativePath(ok).ok()) << ok;
  }
  EXPECT_TRUE(ValidateRelativePath(std::string(255, 'n')).ok());
}

TEST(ValidateRelativePathTest, RefusesEscapesAndMalformedPaths) {
  const std::string refused[] = {"/abs", "../x", "a/../../x", ".", "..", "a/.", "a/..", "a//b",
                                 "a/", "/", std::string("a\0b", 3), std::string(256, 'n'),
                                 "d/" + std::string(256, 'n')};
  for (const std::string& bad : refused) {
    Status s = ValidateRelativePath(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), Code::kCorruption) << bad;
  }
  std::string long_path;
  while (long_path.size() <= 4095) long_path += "abcdefghij/";
  long_path += "x";
  EXPECT_FALSE(ValidateRelativePath(long_path).ok());
}

TEST(SplitParentTest, SplitsAtTheLastSlash) {
  EXPECT_EQ(SplitParent("a/b/c"), std::make_pair(std::string_view("a/b"), std::string_view("c")));
  EXPECT_EQ(SplitParent("c"), std::make_pair(std::string_view(""), std::string_view("c")));
  EXPECT_EQ(JoinPath("", "c"), "c");
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
}

TEST(TempNameTest, OnlyThePrefixCounts) {
  EXPECT_TRUE(IsTempName(".ferry-tmp.12.34"));
  EXPECT_FALSE(IsTempName("x.ferry-tmp.12"));
  EXPECT_FALSE(IsTempName(".ferry-tm"));
}

bool Excluded(const std::vector<std::string>& patterns, const std::string& path, bool dir = false) {
  Result<ExcludeList> list = ExcludeList::Make(patterns);
  EXPECT_TRUE(list.ok());
  return list->Excludes(path, dir);
}

TEST(ExcludeListTest, BasenamePatternsMatchAtAnyDepth) {
  EXPECT_TRUE(Excluded({"*.tmp"}, "a.tmp"));
  EXPECT_TRUE(Excluded({"*.tmp"}, "x/y/a.tmp"));
  EXPECT_FALSE(Excluded({"*.tmp"}, "a.tmp/real"));
  EXPECT_TRUE(Excluded({"lost+found"}, "lost+found", true));
  EXPECT_FALSE(Excluded({"lost+found"}, "lost+found2", true));
}

TEST(ExcludeListTest, AnchoredDirectoryAndInnerSlashPatterns) {
  EXPECT_TRUE(Excluded({"/top"}, "top"));
  EXPECT_FALSE(Excluded({"/top"}, "a/top"));
  EXPECT_TRUE(Excluded({"cache/"}, "a/cache", true));
  EXPECT_FALSE(Excluded({"cache/"}, "a/cache", false));
  EXPECT_TRUE(Excluded({"logs/*.log"}, "var/logs/x.log"));
  EXPECT_FALSE(Excluded({"logs/*.log"}, "var/logs/sub/x.log"));
  EXPECT_TRUE(Excluded({"logs/**"}, "var/logs/sub/x.log"));
  EXPECT_FALSE(Excluded({"ogs/*.log"}, "var/logs/x.log"));  // tails start at a component
  EXPECT_TRUE(Excluded({"[ab].txt"}, "b.txt"));
  EXPECT_FALSE(Excluded({}, "anything"));
  EXPECT_FALSE(Excluded({"*"}, ""));  // the root is never excluded
}

TEST(ExcludeListTest, RefusesUselessPatterns) {
  EXPECT_FALSE(ExcludeList::Make({""}).ok());
  EXPECT_FALSE(ExcludeList::Make({"/"}).ok());
  EXPECT_FALSE(ExcludeList::Make(std::vector<std::string>(1025, "x")).ok());
}

}  // namespace
}  // namespace ferry
