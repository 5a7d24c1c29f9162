"""RabbitMQ settings of the search and its test servers: edit them here for your site.

Every setting can also be given as an environment variable (``ANGLENAS_MQ_HOST``, ``ANGLENAS_MQ_PORT``,
``ANGLENAS_MQ_USER``, ``ANGLENAS_MQ_PASSWORD``, ``ANGLENAS_MQ_VHOST``, ``ANGLENAS_MQ_REQUEST_QUEUE``,
``ANGLENAS_MQ_RESULT_QUEUE``, ``ANGLENAS_MQ_DEAD_LETTER_QUEUE``) or a flag of ``main.py`` / ``test_server.py``
(``--mq_host`` ...); a flag beats the environment, which beats this file. See docs/searching.md for the
broker set-up.
"""

BROKER = dict(
    mq_host="localhost",
    mq_port=5672,
    mq_user="guest",  # RabbitMQ allows guest only from localhost: create a user for remote test servers
    mq_password="guest",
    mq_vhost="/",
    request_queue="anglenas_requests",  # searches and test servers of one group share it
    result_queue="anglenas_results",  # one per concurrent search
    dead_letter_queue="anglenas_dead_letters",
)
