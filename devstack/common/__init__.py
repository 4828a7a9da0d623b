"""What both local stacks and the tests use: template.yaml, its resources, each function's environment,
moto with atomic DynamoDB requests, Lambda's SQS event source."""
