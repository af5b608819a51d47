// Sender: the source end of a stage. Given a scanned manifest and an open session, it streams
// the entries in batches, answers the receiver's NEEDs with file content (holes are not sent),
// and waits for the receiver's COMMIT. No round trip per file: entries, needs and data overlap.
// A file that changes while it is read is sent, flagged, and resent by the next stage; a file
// that vanishes is counted. Neither fails the stage.
// Threading: Run() uses the calling thread to write and one internal thread to read.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "agent/channel.h"
#include "agent/fs.h"
#include "agent/scan.h"
#include "agent/sync_types.h"
#include "base/result.h"

namespace ferry {

class Sender {
 public:
  // REQUIRES: the session is open (handshake done); `channel` and `progress` outlive Run().
  Sender(Channel& channel, std::string root, ScanResult scan, SyncProgress* progress, ItemSink items);

  Result<SyncSummary> Run();

 private:
  void ReadLoop();
  Status HandleFrame(const Frame& frame, bool* finished);
  Status AcceptNeeds(const std::vector<uint32_t>& ids);
  Status SendEntries();
  // Sends every NEED received so far; with `wait`, until the receiver's NEED_END.
  Status SendNeededFiles(bool wait);
  Status SendFile(uint32_t id);
  // *data_bytes: content bytes sent (holes are not).
  Status SendFileData(int fd, const protocol::Entry& entry, protocol::FileEnd* end, uint64_t* data_bytes);
  void Fail(const Status& status);

  Channel& channel_;
  std::string root_;
  UniqueFd root_fd_;
  ScanResult scan_;
  SyncProgress* progress_;
  ItemSink items_;
  std::string payload_;  // reused for DATA frames
  SyncSummary summary_;

  std::mutex mutex_;  // guards the fields below, shared with the reader thread
  std::condition_variable changed_;
  std::deque<uint32_t> needs_;
  std::vector<bool> needed_;  // by id: asked for already (duplicates are a protocol error)
  bool need_end_ = false;
  bool committed_ = false;
  protocol::Commit commit_;
  Status failure_;
};

}  // namespace ferry
