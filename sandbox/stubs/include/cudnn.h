/* Sandbox stub of cudnn.h: includes the cuDNN @MAJOR@ sub-headers like the real one. */
#ifndef CUDNN_H_
#define CUDNN_H_

#include "cudnn_version.h"
#include "cudnn_graph.h"
#include "cudnn_ops.h"
#include "cudnn_adv.h"
#include "cudnn_cnn.h"

#endif /* CUDNN_H_ */
