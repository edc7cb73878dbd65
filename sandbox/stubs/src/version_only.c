/* A stub library whose only export is its identification symbol (see stub_common.h). */
#include "stub_common.h"
