/* Sandbox stub of cusolverDn.h. */
#ifndef CUSOLVERDN_H_
#define CUSOLVERDN_H_

#include "cusolver_common.h"

#endif /* CUSOLVERDN_H_ */
