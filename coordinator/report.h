// `ferry report PLAN --html FILE`: one self-contained HTML page (no script, no external file)
// from the plan's journal: the migration's state, a chart of each stage's changed bytes, its
// duration and the downtime predicted after it (with max_downtime, and the cutover's actual
// downtime beside its prediction), the stage table per pair, the journal's transitions and the
// DNS switches (the record before and after).
// Threading: the caller's.
#pragma once

#include <string>

#include "base/result.h"
#include "coordinator/plan.h"

namespace ferry {

// Writes the page (through a temp file renamed over `html_path`): "wrote FILE (N stages, state
// S)", or the journal's or the file's error.
Result<std::string> WritePlanReport(const Plan& plan, const std::string& state_dir, const std::string& html_path);

}  // namespace ferry
