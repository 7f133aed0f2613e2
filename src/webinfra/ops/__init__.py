"""Operations on a running cluster: what an operator asks for and what changes it.

deploy (rolling releases), drain (take a server out of HAProxy and back), scale (add/remove servers and
replicas; refresh brings the running services in line with the new topology, replica_clone copies a
new replica's data), faults (crash, partition, slow, recover), switchover (ask the HA agents for a new primary).
May import control/, services/, hosts/, plan/, model/ and agent.clone; never observe/, proving/, cli/."""
