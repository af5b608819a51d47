// Sizes for people: "1.5 GiB", "312 KiB", in messages, tables and reports of every room.
// Threading: pure functions.
#pragma once

#include <string>

namespace ferry {

// "1.5 GiB", "312 KiB", "17 B".
std::string HumanBytes(double bytes);

}  // namespace ferry
