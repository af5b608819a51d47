#include "base/status.h"

#include <cerrno>

#include <gtest/gtest.h>

#include "base/result.h"

namespace ferry {
namespace {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ErrnoIsClassifiedAndNamed) {
  Status s = Status::Errno(ENOSPC, "write /v/a");
  EXPECT_EQ(s.code(), Code::kNoSpace);
  EXPECT_EQ(s.error_number(), ENOSPC);
  EXPECT_EQ(s.ToString(), "write /v/a: No space left on device");
  EXPECT_EQ(Status::Errno(ECONNREFUSED, "x").code(), Code::kNetwork);
  EXPECT_TRUE(Status::Errno(ECONNRESET, "x").retryable());
  EXPECT_FALSE(Status::Errno(EIO, "x").retryable());
}

TEST(StatusTest, AnnotatePrefixesContextAndKeepsCode) {
  Status s = Status::NotFound("no such volume").Annotate("peer 127.0.0.1:1");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.ToString(), "peer 127.0.0.1:1: no such volume");
  EXPECT_TRUE(Status::Ok().Annotate("x").ok());
}

Result<int> Half(int v) {
  if (v % 2 != 0) return Status::InvalidArgument("odd");
  return v / 2;
}

TEST(ResultTest, ValueOrStatus) {
  Result<int> a = Half(4);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 2);
  Result<int> b = Half(3);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::kInvalidArgument);
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  Result<int> b = Half(3);
  EXPECT_DEATH((void)b.value(), "CHECK failed");
}

}  // namespace
}  // namespace ferry
