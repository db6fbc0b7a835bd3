mod support;

// (being written)
