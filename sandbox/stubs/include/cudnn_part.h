/* Sandbox stub of @HEADER@: declares nothing beyond cudnn_graph.h. */
#ifndef @GUARD@
#define @GUARD@

#include "cudnn_graph.h"

#endif /* @GUARD@ */
