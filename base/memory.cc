#include "base/memory.h"

#include <malloc.h>

namespace ferry {

void ReleaseFreeMemory() { ::malloc_trim(0); }

}  // namespace ferry
