def test_cluster(mariadb_cluster):
    print(mariadb_cluster.replica.sql("SHOW SLAVE STATUS\\G"))
    print(mariadb_cluster.replica.sql("SELECT user, host FROM mysql.user; SHOW TABLES FROM site"))
