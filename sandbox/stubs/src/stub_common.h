/*
 * Shared by every sandbox stub library. These libraries contain no GPU code: they only give
 * the real SONAMEs and the few entry points the project's checks call, so that dlopen(),
 * ldconfig and ctypes behave as on a machine without a GPU.
 *
 * The build passes -DSTUB_ID_SYMBOL=<unique C name>, -DSTUB_LIBRARY="<soname>" and
 * -DSTUB_VERSION="<full version>".
 */
#ifndef SANDBOX_STUB_COMMON_H
#define SANDBOX_STUB_COMMON_H

#include <stddef.h>

#define STUB_EXPORT __attribute__((visibility("default")))

/* One uniquely named symbol per library, so two stubs loaded together never interpose. */
STUB_EXPORT const char *STUB_ID_SYMBOL(void)
{
    return STUB_LIBRARY " " STUB_VERSION " (sandbox stub without GPU code)";
}

#endif
