#include "sandbox/rootfs.h"
