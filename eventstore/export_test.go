package eventstore

// ReadAllSQL lets the tests examine the reader's query plan.
const ReadAllSQL = readAllSQL
