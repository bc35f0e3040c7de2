package runner

// maxDepth bounds a walk up the process tree; a deeper chain means the walk
// is going round in circles (pids reused under it).
const maxDepth = 4096
