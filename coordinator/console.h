// What the coordinator tells the operator while it works, and the seam through which it does:
// the command line (cli/) gives it a Console that writes to the terminal; the coordinator never
// prints itself.
// Threading: Say and Tell are called from the coordinator's thread; the rows of ShowProgress are
// read on whatever thread the implementation chooses while the stage's threads update them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/sync_types.h"

namespace ferry {

class Console {
 public:
  virtual ~Console() = default;
  // A step of the migration ("stage 3: committed", "cutover: quiescing"): shown when the
  // operator asked for progress.
  virtual void Say(const std::string& line) = 0;
  // What the operator must see whatever was asked: failures, decisions, the downtime (stderr).
  virtual void Tell(const std::string& line) = 0;
  struct Row {
    std::string label;  // the pair
    const SyncProgress* progress;
  };
  // Shows the rows' progress while a stage runs, until the returned handle is destroyed.
  virtual std::shared_ptr<void> ShowProgress(std::vector<Row> rows) = 0;
};

}  // namespace ferry
