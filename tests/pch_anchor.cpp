// Nothing: the target exists to build the precompiled header the tests share.
