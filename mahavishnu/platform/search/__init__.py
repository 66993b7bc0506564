"""Search pieces every service that keeps text shares (Session-Buddy's memories, Akosha's
records of many systems): the words of a text, BM25 over blind tokens in process, vectors and
their index, the local embedding model, and the gated fusion of keyword and meaning."""
